"""Bundled sample data for `unsilo demo`."""
