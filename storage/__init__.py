"""The shared SQLModel store: tables, engines, unit of work, migrations."""

# Here, not in `storage.db`, so that reading the default costs no SQLAlchemy import (`unsilo --help`).
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./unsilo.db"
