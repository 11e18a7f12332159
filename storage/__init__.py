"""The shared SQLModel store: tables, engines, unit of work, migrations."""
