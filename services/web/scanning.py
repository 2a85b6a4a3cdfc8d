"""One scan, as the API and the pages submit it: the signatures it carries checked first (in a
transaction of their own, so a wrong password counts and nothing is recorded), then recorded
in its own transaction, or refused and the refusal kept in another."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from limits import parse_many
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.config import API_LIMIT_OFF
from services.domain.custody import Actor
from services.domain.errors import DomainError, SignatureRefused
from services.operations import signing
from services.operations.admin import site_by_code
from services.operations.refusals import RefusalLimit
from services.operations.scans import ScanInput, ScanOutcome, record_refusal, record_scan
from services.operations.signing import NO_SIGNERS, Signers, Tickets
from services.web.api.present import scan_result
from services.web.api.schemas import ScanResult
from services.web.state import login_policy, max_clock_skew, state, unit_of_work, utcnow


@dataclass(frozen=True)
class Credentials:
    """The e-signatures an act came with: the performer's password, a witness's e-mail and
    password (each None when not given)."""

    password: str | None = None
    witness_email: str | None = None
    witness_password: str | None = None
    # single sign-on users' re-authentications at the identity provider (pages/sso.py)
    tickets: Tickets | None = None

    @property
    def given(self) -> bool:
        """Whether anything came (an empty password is none: signature_required, not a wrong
        password counted against the signer)."""
        return any((self.password, self.witness_email, self.witness_password, self.tickets))


NO_CREDENTIALS = Credentials()


def signers_for(actor: Actor, site_code: str, credentials: Credentials) -> Signers:
    """Authenticate an act's signatures before the act, in a transaction of its own that is
    committed even when they are refused (the failure counts towards the lock-out); raises
    SignatureInvalid (or SignatureRequired for half a witness)."""
    if not credentials.given:
        return NO_SIGNERS
    with unit_of_work() as uow:
        try:
            site = site_by_code(uow.session, site_code)
            assert site.id is not None
            signers = signing.authenticate_signers(
                uow.session,
                actor=actor,
                site_id=site.id,
                password=credentials.password or None,
                witness_email=credentials.witness_email or None,
                witness_password=credentials.witness_password or None,
                now=utcnow(),
                policy=login_policy(),
                tickets=credentials.tickets,
            )
        except SignatureRefused:
            uow.commit()
            raise
        uow.commit()
    return signers


def submit_scan(
    actor: Actor, scan_input: ScanInput, credentials: Credentials = NO_CREDENTIALS
) -> tuple[ScanOutcome, ScanResult]:
    """Record the scan (signed in the act where its site requires it) or raise its
    DomainError, after keeping the refusal on record. A wrong password is no refused scan: it
    counts towards the signer's lock-out, and nothing is recorded."""
    signers = signers_for(actor, scan_input.site, credentials)
    try:
        return _record(actor, scan_input, signers)
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


def _record(
    actor: Actor, scan_input: ScanInput, signers: Signers
) -> tuple[ScanOutcome, ScanResult]:
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
                    signers=signers,
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
