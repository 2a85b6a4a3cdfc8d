"""Tasks. They take ids, re-check their rows, and are safe to run twice."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from celery.signals import worker_process_init

from services.config import Settings
from services.db import Database, UnitOfWork, privileges
from services.domain.errors import SigningKeyMissing
from services.operations import audit, deadlines, family_emails, keys, notifications, plans
from workers import channels
from workers.celery_app import celery_app, settings

log = logging.getLogger(__name__)
_database: Database | None = None
CONTINUE_FOR_S = 20.0  # well under the soft time limit


def database() -> Database:
    global _database
    if _database is None:
        made = Database.from_url(
            settings.sqlalchemy_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        if settings.app_env == "production":
            privileges.refuse_privileged_role(made.engine)  # as the web app does
        _database = made
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


@celery_app.task(name="deadlines.sweep")
def sweep() -> str:
    """Flag legs that became at risk, late or overdue for escalation; their news goes out
    through the outbox at once."""
    with UnitOfWork(database().session_factory) as uow:
        result = deadlines.sweep(uow.session, now=utcnow())
        uow.commit()
    if result.at_risk or result.late or result.escalated:
        _wake_dispatcher()
    return str(result)


@celery_app.task(name="plans.expire")
def expire_plans() -> str:
    """Free the slots of holds that ran out unconfirmed (on record in each order's chain),
    re-plan the plans whose legs run late, and send the plans' reminders of the day."""
    with UnitOfWork(database().session_factory) as uow:
        expired = plans.expire_holds(uow.session, now=utcnow())
        uow.commit()
    with UnitOfWork(database().session_factory) as uow:
        late = plans.replan_due(uow.session, now=utcnow())
        reminded = plans.send_reminders(uow.session, now=utcnow())
        uow.commit()
    if expired or late or reminded:
        _wake_dispatcher()
    return (
        f"expired {len(expired)} hold(s), re-planned {len(late)} late plan(s), sent "
        f"{reminded} reminder(s)"
    )


def signer() -> keys.Signer | None:
    """The installation's checkpoint key; without one (no `vein2vein keys init` yet) the
    checkpoint is taken unsigned, and said so."""
    found = keys.load_signer(settings.signing_key_path)
    if found is None:
        log.warning("no signing key at %s: checkpoints are unsigned", settings.signing_key_path)
    return found


@celery_app.task(name="audit.checkpoint")
def checkpoint() -> str:
    """Record the head of every chain, chained to the previous checkpoint: a tail or an order
    deleted behind the triggers' back is found by `vein2vein audit verify`."""
    with UnitOfWork(database().session_factory) as uow:
        try:
            row = audit.checkpoint(uow.session, now=utcnow(), signer=signer())
        except SigningKeyMissing as error:
            log.error("no checkpoint taken: %s", error.detail)
            return f"no checkpoint: {error.detail}"
        uow.commit()
        return f"checkpoint {row.id}: {len(row.heads)} chains, {row.records} records"


@celery_app.task(name="notifications.digest")
def digest() -> str:
    """Fold each digest subscriber's held progress news into its daily message, once the
    subscriber's site's clock has passed DIGEST_HOUR; the outbox delivers it."""
    with UnitOfWork(database().session_factory) as uow:
        made = notifications.fold_digests(uow.session, now=utcnow(), hour=settings.digest_hour)
        uow.commit()
    if made:
        _wake_dispatcher()
    return f"{len(made)} digest(s)"


def _wake_dispatcher() -> None:
    """Queue a dispatch now rather than at the beat's next tick; best effort, like the kick."""
    try:
        dispatch.apply_async(retry=False)
    except Exception as error:
        log.warning("could not queue the dispatcher: %s", error)


@celery_app.task(name="notifications.dispatch")
def dispatch() -> int:
    """Claim due notifications and hand them to delivery tasks in chunks; a lost hand-over is
    claimed again once its lease runs out."""
    with UnitOfWork(database().session_factory) as uow:
        streams = notifications.claim_streams(
            uow.session,
            now=utcnow(),
            lease=dt.timedelta(seconds=settings.notify_claim_seconds),
            limit=settings.dispatch_batch,
        )
        uow.commit()
    for chunk in chunks(streams, max(1, settings.deliver_chunk)):
        try:
            deliver.apply_async(([list(claim) for claim in chunk],), retry=False)
        except Exception as error:  # the broker went away: the lease brings the rows back
            log.warning("could not queue %d notifications: %s", len(chunk), error)
    return sum(len(stream) for stream in streams)


def chunks(streams: list[list[tuple[int, str]]], size: int) -> list[list[tuple[int, str]]]:
    """Pack whole streams into tasks of about ``size`` claims. A stream is never split: its
    notifications are delivered one after the other, by one task."""
    out: list[list[tuple[int, str]]] = []
    for stream in streams:
        if not out or len(out[-1]) + len(stream) > size:
            out.append([])
        out[-1].extend(stream)
    return [chunk for chunk in out if chunk]


@celery_app.task(name="notifications.deliver")
def deliver(claims: list[list[Any]]) -> list[str]:
    """Deliver a chunk, then keep going with whatever became due in the same streams (the next
    scan of the same bag, typically) for up to CONTINUE_FOR_S, rather than queueing it behind
    everything else. The streams are this task's meanwhile, so order holds."""
    db, current = database(), settings
    lease = dt.timedelta(seconds=current.notify_claim_seconds)
    results: list[str] = []
    chunk = [(int(i), str(t)) for i, t in claims]
    started = time.monotonic()
    while chunk:
        results += deliver_claims(chunk, db, current)
        if time.monotonic() - started > CONTINUE_FOR_S:
            break
        with UnitOfWork(db.session_factory) as uow:
            streams = notifications.streams_of(uow.session, [i for i, _ in chunk])
            more = notifications.claim_streams(
                uow.session, now=utcnow(), lease=lease, limit=current.deliver_chunk, only=streams
            )
            uow.commit()
        chunk = [claim for stream in more for claim in stream]
    return results


def deliver_now(notification_id: int, token: str, db: Database, current: Settings) -> str:
    (result,) = deliver_claims([(notification_id, token)], db, current)
    return result


def deliver_claims(claims: list[tuple[int, str]], db: Database, current: Settings) -> list[str]:
    """Spend the claims (one short transaction), then send each (no transaction held) and
    record its outcome at once, so a worker killed mid-chunk repeats at most the one in flight."""
    lease = dt.timedelta(seconds=current.notify_claim_seconds)
    with UnitOfWork(db.session_factory) as uow:
        attempts = [
            notifications.begin_attempt(
                uow.session,
                notification_id=i,
                token=token,
                now=utcnow(),
                lease=lease,
                max_attempts=current.notify_max_attempts,
            )
            for i, token in claims
        ]
        uow.commit()
    results = []
    failed: set[notifications.Stream] = set()
    with channels.Senders(current) as senders:
        for attempt in attempts:
            if attempt is None:
                results.append("skipped")
                continue
            if attempt.stream in failed:  # never overtake an earlier notification
                with UnitOfWork(db.session_factory) as uow:
                    notifications.release_attempt(uow.session, attempt=attempt, now=utcnow())
                    uow.commit()
                results.append("pending")
                continue
            outcome = senders.send(attempt)
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
            if state.value == "pending":
                failed.add(attempt.stream)
            if outcome.error:
                log.warning(
                    "notification %s attempt %s: %s",
                    attempt.notification_id,
                    attempt.number,
                    outcome.error,
                )
            results.append(state.value)
    return results


@celery_app.task(name="family.notify")
def family_notify() -> str:
    """E-mail the families who opted in about a new stage of their order (at most one a day,
    none at night at the treatment site); the outbox delivers them."""
    with UnitOfWork(database().session_factory) as uow:
        made = family_emails.notify_families(
            uow.session,
            now=utcnow(),
            public_url=settings.public_url or family_emails.DEFAULT_PUBLIC_URL,
            secret_key=settings.secret_key,
        )
        uow.commit()
    if made:
        _wake_dispatcher()
    return f"{len(made)} family e-mail(s)"
