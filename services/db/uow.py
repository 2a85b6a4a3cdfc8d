"""The unit of work: one transaction, rolled back unless the caller commits it."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

# session.info key: this transaction wrote notifications for the workers (see services.broker)
PENDING_FLAG = "notifications_pending"


class UnitOfWork:
    """``with UnitOfWork(factory) as uow: ...; uow.commit()``. Operations only flush."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed and detaches the rows without
        # expiring them, so a view can still read what it loaded
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
