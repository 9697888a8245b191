"""Storage: SQLAlchemy Core tables, the engine and transactions, and schema migrations."""

from registry.db.engine import Database

__all__ = ["Database"]
