"""Alembic migration scripts of the Unsilo schema."""
