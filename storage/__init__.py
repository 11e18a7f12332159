"""The shared SQLModel store: tables, engines, unit of work, migrations."""

# Here, not in `storage.db`, so that reading the default costs no SQLAlchemy import (`unsilo --help`).
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./unsilo.db"

# A customer's earlier conversations are counted up to this many (a card says "100+"); here, so
# that the views read it without importing the store.
EARLIER_COUNTED = 100


def masked_url(url: str) -> str:
    """A database URL fit to print or log: its password, if any, shown as `***` (SQLAlchemy's own
    rendering, imported only when a URL is shown; a text it cannot parse has whatever stands between
    `:` and `@` masked)."""
    import re

    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparseable text: mask by shape
        return re.sub(r"(?<=:)[^:@/]*(?=@)", "***", url)
