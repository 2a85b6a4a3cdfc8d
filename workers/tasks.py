"""Tasks. They take ids, re-check their rows, and are safe to run twice."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from celery.signals import worker_process_init

from services.config import Settings
from services.db import Database, UnitOfWork
from services.operations import notifications
from workers import channels
from workers.celery_app import celery_app, settings

log = logging.getLogger(__name__)
_database: Database | None = None


def database() -> Database:
    global _database
    if _database is None:
        current = settings
        _database = Database.from_url(
            current.sqlalchemy_url, sqlite_busy_timeout_ms=current.sqlite_busy_timeout_ms
        )
    return _database


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """Pooled database connections must not cross fork(): each pool child opens its own."""
    global _database
    if _database is not None:
        _database.engine.dispose(close=False)
    _database = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@celery_app.task(name="notifications.dispatch")
def dispatch() -> int:
    """Claim due notifications and hand each to a delivery task; a lost hand-over is claimed
    again once its lease runs out."""
    current = settings
    with UnitOfWork(database().session_factory) as uow:
        claims = notifications.claim_due(
            uow.session,
            now=utcnow(),
            lease=dt.timedelta(seconds=current.notify_claim_seconds),
            limit=current.dispatch_batch,
        )
        uow.commit()
    for notification_id, token in claims:
        try:
            deliver.apply_async((notification_id, token), retry=False)
        except Exception as error:  # the broker went away: the lease brings the row back
            log.warning("could not queue notification %s: %s", notification_id, error)
    return len(claims)


@celery_app.task(name="notifications.deliver")
def deliver(notification_id: int, token: str) -> str:
    return deliver_now(notification_id, token, database(), settings)


def deliver_now(notification_id: int, token: str, db: Database, current: Settings) -> str:
    """One attempt: spend the claim (short transaction), send (no transaction held), record."""
    with UnitOfWork(db.session_factory) as uow:
        attempt = notifications.begin_attempt(
            uow.session,
            notification_id=notification_id,
            token=token,
            now=utcnow(),
            lease=dt.timedelta(seconds=current.notify_claim_seconds),
        )
        uow.commit()
    if attempt is None:
        return "skipped"
    outcome = channels.send(attempt, current)
    with UnitOfWork(db.session_factory) as uow:
        state = notifications.finish_attempt(
            uow.session,
            attempt=attempt,
            outcome=outcome,
            now=utcnow(),
            max_attempts=current.notify_max_attempts,
            backoff_base=current.notify_backoff_seconds,
            backoff_cap=current.notify_backoff_cap_seconds,
        )
        uow.commit()
    if outcome.error:
        log.warning(
            "notification %s attempt %s: %s", notification_id, attempt.number, outcome.error
        )
    return state.value
