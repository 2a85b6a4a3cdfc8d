"""The engine and session factory, with the SQLite settings the embedded default relies on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.db.cache import SITE_CACHE, SiteCache

# SQLite: one writer at a time. Write-ahead log, full fsync, foreign keys, and a busy timeout
# instead of "database is locked" errors; every transaction takes the write lock at BEGIN so two
# scans can never both read a state and then both write (SQLAlchemy's pysqlite "BEGIN" recipe).
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL
    "foreign_keys": 1,
}
# PostgreSQL: a connection that sat in the pool this long is pinged before it is handed out (a
# restart or failover ends every connection; the ping finds a dead one and the pool replaces it
# and every older one). One used within the last second is not: under load no checkout waits on
# a ping, and a connection that died in that second fails its first statement, which invalidates
# the pool as the ping would; the scan and the token lookup, which may, then try once more.
PING_IF_IDLE_SECONDS = 1.0


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 30_000, **kwargs: Any) -> Engine:
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        engine = sa.create_engine(sa_url, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            ping_idle_connections(engine)
        return engine

    if sa_url.database and sa_url.database != ":memory:":
        Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        sa_url, connect_args={"timeout": sqlite_busy_timeout_ms / 1000}, **kwargs
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy, not the driver, decide when a transaction begins
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(sqlite_busy_timeout_ms)}")
        for name, value in SQLITE_PRAGMAS.items():
            cursor.execute(f"PRAGMA {name} = {value}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it has been idle ``PING_IF_IDLE_SECONDS``
    (SQLAlchemy's ``pool_pre_ping`` pings on every checkout: two round trips on every scan)."""

    @sa.event.listens_for(engine.pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        # record.info lasts as long as the DBAPI connection: a replaced one starts without it
        record.info["checked_in"] = time.monotonic()

    @sa.event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in < PING_IF_IDLE_SECONDS:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # the pool replaces this connection and every one older than it, then retries
            raise sa.exc.InvalidatePoolError(
                f"connection found dead on checkout: {error}"
            ) from error


def check_sqlite_settings(engine: Engine) -> None:
    """Refuse to start on a SQLite connection without the settings that keep scans safe."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        found = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in (*SQLITE_PRAGMAS, "busy_timeout")
        }
    expected = {**SQLITE_PRAGMAS}
    wrong = {k: v for k, v in expected.items() if str(found[k]).lower() != str(v).lower()}
    if wrong or not found["busy_timeout"]:
        raise RuntimeError(f"SQLite settings not in force: expected {expected}, found {found}")


@dataclass
class Database:
    """The engine and its session factory, made once per process by a factory."""

    engine: Engine
    session_factory: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        engine = make_engine(url, **kwargs)
        check_sqlite_settings(engine)
        # one cache of the sites' immutable ids, codes and kinds per database (services.db.cache)
        factory = sessionmaker(
            engine, class_=Session, expire_on_commit=False, info={SITE_CACHE: SiteCache()}
        )
        return cls(engine=engine, session_factory=factory)

    def reading(self) -> sa.Connection:
        """A connection for one read that needs no transaction of its own (a token looked up
        on every API request): on PostgreSQL in autocommit, so the read is one round trip, not
        BEGIN, SELECT and ROLLBACK. SQLite's transactions cost no round trip; it reads as
        ever. ``with db.reading() as connection: ...``"""
        connection = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection
