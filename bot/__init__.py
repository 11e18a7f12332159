"""Unsilo's platform-neutral core: settings, domain, routing, ingest, outbox, CLI."""
