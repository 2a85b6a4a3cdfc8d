"""One scan, as the API and the scan station both submit it: recorded in its own transaction,
or refused and the refusal kept in another."""

from __future__ import annotations

import datetime as dt
import functools

from limits import parse_many
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.config import API_LIMIT_OFF
from services.domain.custody import Actor
from services.domain.errors import DomainError
from services.operations.refusals import RefusalLimit
from services.operations.scans import ScanInput, ScanOutcome, record_refusal, record_scan
from services.web.api.present import scan_result
from services.web.api.schemas import ScanResult
from services.web.state import max_clock_skew, state, unit_of_work, utcnow


def submit_scan(actor: Actor, scan_input: ScanInput) -> tuple[ScanOutcome, ScanResult]:
    """Record the scan or raise its DomainError, after keeping the refusal on record."""
    try:
        return _record(actor, scan_input)
    except DomainError as error:
        # the scan's own transaction is rolled back; the refusal is a record of its own
        keep_refusal(actor, scan_input, error)
        raise


def keep_refusal(actor: Actor, scan_input: ScanInput, error: DomainError) -> None:
    """A refused scan is a record of its own, in a transaction of its own; a user over the
    refusal limit is answered RateLimited instead, and nothing is kept."""
    with unit_of_work() as uow:
        record_refusal(
            uow.session,
            actor=actor,
            scan=scan_input,
            error=error,
            now=utcnow(),
            limits=refusal_limits(state().settings.refusal_rate_limit),
        )
        uow.commit()


@functools.cache
def refusal_limits(setting: str) -> tuple[RefusalLimit, ...]:
    """REFUSAL_RATE_LIMIT ("60 per minute; 600 per hour", or "off") as the operation's limits."""
    if setting == API_LIMIT_OFF:
        return ()
    return tuple(
        RefusalLimit(item.amount, dt.timedelta(seconds=item.get_expiry()))
        for item in parse_many(setting)
    )


def _record(actor: Actor, scan_input: ScanInput) -> tuple[ScanOutcome, ScanResult]:
    """One transaction for the scan. When a concurrent scan with the same event_id committed
    first (the unique constraint is the last line of defence), try once more: the second try
    finds that scan and answers as a replay, or refuses the reuse of its id. When the pooled
    connection turned out to be dead before the COMMIT was sent, nothing was written: try once
    more on a new one. A connection lost during the COMMIT is a 503 to send again (whether it
    committed is unknown; the resend with the same event_id is answered as a replay)."""
    for attempt in (1, 2):
        committing = False
        try:
            with unit_of_work() as uow:
                outcome = record_scan(
                    uow.session,
                    actor=actor,
                    scan=scan_input,
                    now=utcnow(),
                    max_clock_skew=max_clock_skew(),
                )
                committing = True
                uow.commit()
                return outcome, scan_result(uow.session, actor, outcome)
        except IntegrityError:
            if attempt == 2:
                raise
        except DBAPIError as error:
            if attempt == 2 or committing or not error.connection_invalidated:
                raise
    raise AssertionError("unreachable")
