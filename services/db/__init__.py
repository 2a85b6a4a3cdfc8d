"""Persistence: SQLModel tables, the engine and session factory, the unit of work, migrations."""

from services.db.engine import Database, make_engine
from services.db.uow import UnitOfWork

__all__ = ["Database", "UnitOfWork", "make_engine"]
