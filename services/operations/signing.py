"""Corrections and electronic signatures (21 CFR Part 11): nothing recorded is ever edited.

A correction is a new event pointing at the one it corrects, with a reason, by QA or an admin
of a site the order names. A signature on a critical step is given by re-entering one's e-mail
and password (two components), states its meaning and is bound to the hash of the record it
signs; a site may require a second person's (witness) signature on a step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sqlmodel import Session, select

from services.db.cache import KnownSite
from services.db.models import Batch, CustodyEvent, Signature, SignatureRule, Site, Unit, User
from services.domain.audit import signature_content, signature_hash
from services.domain.custody import CORRECT, Actor, Role
from services.domain.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    SignatureInvalid,
    SignatureRefused,
    SignatureRequired,
)
from services.domain.signatures import (
    DISPOSITION,
    MEANINGS,
    NOT_REQUIRED,
    SIGNED,
    WITNESS,
    WITNESSED,
    check_in_act,
    check_signature,
    check_step,
    correction_meaning,
    first_meaning,
    required_by,
    requirement,
    site_steps,
    status,
    step_of,
)
from services.operations.access import actor_for, order_by_coi
from services.operations.orders import lock_order
from services.operations.passwords import LoginPolicy, check_password
from services.operations.record import append_event
from services.operations.sso import consume_ticket

CORRECTING_ROLES = frozenset({Role.QA, Role.ADMIN})
SignatureStatus = Literal["not_required", "awaiting", "awaiting_witness", "signed"]
AWAITING: frozenset[SignatureStatus] = frozenset({"awaiting", "awaiting_witness"})


class Step(Protocol):
    """What a signature's need is judged on: an EventRecord or an EventStep."""

    @property
    def id(self) -> int: ...
    @property
    def site(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def batch_status(self) -> str | None: ...
    @property
    def signing(self) -> str | None: ...


def correct_event(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    sequence: int,
    reason: str,
    now: dt.datetime,
    password: str | None,
    policy: LoginPolicy,
    tickets: Tickets | None = None,
) -> CustodyEvent:
    """Record a correction of event ``sequence``, e-signed by its author in the same act: both
    stay in the timeline, and the correction's signature (its meaning by the author's role,
    domain.signatures.correction_meaning) is bound to its hash. No password: SignatureRequired;
    a wrong one: SignatureInvalid, which the caller commits (it counts for the client)."""
    order = order_by_coi(session, actor, coi)
    if actor.role not in CORRECTING_ROLES:
        raise Forbidden("corrections are recorded by QA or an administrator")
    if not reason or not reason.strip():
        raise InvalidRequest("a correction needs a reason")
    reauthenticated = tickets is not None and tickets.performer is not None
    if not password and not reauthenticated:
        raise SignatureRequired("a correction is signed: give your password with it")
    order = lock_order(session, order.id)
    target = _event(session, order.id, sequence, order.coi)
    if tickets is not None and tickets.performer:
        # a single sign-on user re-authenticated at the provider for this correction
        try:
            consume_ticket(
                session,
                token=tickets.performer,
                purpose=tickets.purpose,
                subject={"sequence": str(sequence), "reason": reason},
                witness=False,
                now=now,
                user_id=actor.user_id,
            )
        except SignatureRefused as error:
            raise SignatureInvalid(error.detail) from None
    elif (
        check_password(session, email=actor.email, password=password or "", now=now, policy=policy)
        is None
    ):
        raise SignatureInvalid(
            "the password is wrong (repeated failures make this device wait before trying again)"
        )
    _own_password(session, actor.email)
    unit = session.get(Unit, target.unit_id) if target.unit_id else None
    batch = session.get(Batch, target.batch_id) if target.batch_id else None
    correction = append_event(
        session,
        order=order,
        unit=unit,
        action=CORRECT,
        from_state=unit.state if unit else None,
        site=_site(session, actor.site_id),
        actor=actor,
        occurred_at=now,
        recorded_at=now,
        batch=batch if unit is None else None,
        reason=reason.strip(),
        corrects_id=target.id,
        signing=SIGNED,  # signed in its act, whatever the site's rules
    )
    _signature(session, correction, actor, correction_meaning(actor.role), now, None)
    session.flush()
    return correction


def critical_steps(session: Session, site: Site | KnownSite) -> dict[str, bool]:
    """The site's critical steps as they are now: step -> whether a witness signs too."""
    cache = _rules_cache(session)
    assert site.id is not None
    if site.id not in cache:
        rows = session.exec(select(SignatureRule).where(SignatureRule.site_id == site.id)).all()
        cache[site.id] = site_steps(
            site.kind, {row.step: row.witness_required for row in rows} if rows else None
        )
    return dict(cache[site.id])


def _rules_cache(session: Session) -> dict[int, dict[str, bool]]:
    """The sites' rules as this transaction read them (a release reads them per product)."""
    transaction = session.get_transaction()
    held = session.info.get(RULES)
    if held is None or held[0] is not transaction:
        held = session.info[RULES] = (transaction, {})
    return held[1]


RULES = "signature_rules_read"  # session.info: the rules read in this transaction


def signing_of(session: Session, site: Site | KnownSite, step: str) -> str:
    """What ``step`` needs at ``site`` now: none, signed, or witnessed."""
    return requirement(critical_steps(session, site), step)


def set_critical_step(
    session: Session, *, site: Site, step: str, witness: bool, required: bool
) -> None:
    """Configure one step of a site (the defaults are copied in first, then changed). Only
    the steps an act can sign in the act (a scan, a QA release, a disposition)."""
    check_step(step)
    current = critical_steps(session, site)
    current.pop(DISPOSITION, None)  # signed everywhere; kept as a row only to add a witness
    if required:
        current[step] = witness
    else:
        current.pop(step, None)
    for row in session.exec(select(SignatureRule).where(SignatureRule.site_id == site.id)).all():
        session.delete(row)
    session.flush()
    for name, needs_witness in current.items():
        session.add(SignatureRule(site_id=site.id, step=name, witness_required=needs_witness))  # type: ignore[arg-type]
    session.flush()
    _rules_cache(session).pop(site.id, None)  # type: ignore[arg-type]


# signatures in the act


@dataclass(frozen=True)
class Signers:
    """The signatures that came with an act, authenticated before it: the performer's own
    (their password again) and a witness's (a second person of the site, e-mail and
    password). Either may be absent; the act decides whether its step needs them."""

    performer: Actor | None = None
    witness: Actor | None = None


NO_SIGNERS = Signers()


def authenticate_signers(
    session: Session,
    *,
    actor: Actor,
    site_id: int,
    password: str | None,
    witness_email: str | None,
    witness_password: str | None,
    now: dt.datetime,
    policy: LoginPolicy,
    tickets: Tickets | None = None,
) -> Signers:
    """Check the credentials an act carries, before the act and in a transaction of its own:
    the caller commits even when this raises SignatureInvalid, so that a wrong password counts
    towards the lock-out and nothing of the act is recorded. ``site_id``: where the step
    happens (a witness is a user of that site). ``tickets``: single sign-on users'
    re-authentications at the identity provider instead of passwords (used up here)."""
    performer = witness = None
    if tickets is not None and tickets.performer:
        consume_ticket(
            session,
            token=tickets.performer,
            purpose=tickets.purpose,
            subject=tickets.subject,
            witness=False,
            now=now,
            user_id=actor.user_id,
        )
        performer = actor
        password = None
    if tickets is not None and tickets.witness:
        user, site = consume_ticket(
            session,
            token=tickets.witness,
            purpose=tickets.purpose,
            subject=tickets.subject,
            witness=True,
            now=now,
        )
        if user.id == actor.user_id:
            raise SignatureInvalid(
                "a witness is a second person, not the one who performs the step"
            )
        if site.id != site_id:
            raise SignatureInvalid("the witness must be a user of the site where the step happens")
        witness = actor_for(user, site)
        witness_email = witness_password = None
    if password is not None:
        try:
            authenticate(
                session, actor=actor, email=actor.email, password=password, now=now, policy=policy
            )
        except SignatureRefused as error:
            raise SignatureInvalid(error.detail) from None
        performer = actor
    if witness_email is not None or witness_password is not None:
        if not witness_email or not witness_password:
            raise SignatureRequired("a witness signs with their own e-mail and password")
        if witness_email.strip().lower() == actor.email:
            raise SignatureInvalid(
                "a witness is a second person, not the one who performs the step"
            )
        try:
            witness = authenticate_witness(
                session,
                site_id=site_id,
                email=witness_email,
                password=witness_password,
                now=now,
                policy=policy,
            )
        except SignatureRefused as error:
            raise SignatureInvalid(error.detail) from None
    return Signers(performer, witness)


@dataclass(frozen=True)
class Tickets:
    """Single sign-on re-authentications an act carries (web: from the login session), each
    bound to ``purpose`` (the act's page) and to ``subject``: what the act records, which
    must be what the screen showed when the provider was asked (the bedside's bag, patient
    and event; nothing more for a page whose path names its record)."""

    purpose: str
    performer: str | None = None
    witness: str | None = None
    subject: Mapping[str, str] = field(default_factory=dict)


def check_act(*, step: str, signing: str, actor: Actor, signers: Signers) -> None:
    """Refuse an act whose site requires signatures it does not carry (before it is written)."""
    check_in_act(
        step=step,
        signing=signing,
        role=actor.role,
        signed=signers.performer is not None,
        witnessed=signers.witness is not None,
    )


def sign_in_act(
    session: Session,
    *,
    event: CustodyEvent,
    signers: Signers,
    step: str,
    now: dt.datetime,
    covers: list[str] | None = None,
) -> list[Signature]:
    """The signatures of an act, recorded with it and bound to its record's hash: the
    performer's (meaning what they did; a QA release or disposition: approved) and, where the
    step is witnessed, the witness's. ``covers``: the bags one signature covers besides the
    record it signs (a release's product bags)."""
    if event.signing in (None, NOT_REQUIRED):
        return []
    assert signers.performer is not None  # check_act refused the act otherwise
    rows = [_signature(session, event, signers.performer, first_meaning(step), now, covers)]
    if event.signing == WITNESSED:
        assert signers.witness is not None
        rows.append(_signature(session, event, signers.witness, WITNESS, now, None))
    session.flush()
    return rows


def _signature(
    session: Session,
    event: CustodyEvent,
    signer: Actor,
    meaning: str,
    now: dt.datetime,
    covers: list[str] | None,
) -> Signature:
    user = session.get(User, signer.user_id)
    assert user is not None
    assert event.id is not None
    row = Signature(
        event_id=event.id,
        signer_id=signer.user_id,
        printed_name=user.name,
        meaning=meaning,
        witness=meaning == WITNESS,
        signed_at=now,
        signer_email=user.email,
        covers=covers,
        record_hash=event.hash,
    )
    row.hash = signature_hash(event.hash, signature_content(row))
    session.add(row)
    return row


# signatures after the act, for steps recorded before signatures came with the act


def sign(
    session: Session,
    *,
    actor: Actor,
    coi: str,
    sequence: int,
    email: str,
    password: str,
    meaning: str,
    now: dt.datetime,
    policy: LoginPolicy,
    tickets: Tickets | None = None,
) -> Signature:
    """Sign event ``sequence`` of the order, after the act: only for a step recorded before
    signatures came with the act (a step recorded since was signed in its act, or needed no
    signature). The order is locked first, so two signatures of one step cannot race. The
    caller commits even when this raises SignatureRefused, so that a wrong password counts
    towards the lock-out."""
    order = order_by_coi(session, actor, coi)
    order = lock_order(session, order.id)
    event = _event(session, order.id, sequence, order.coi)
    if meaning not in MEANINGS:
        raise InvalidRequest(f"a signature means one of {', '.join(MEANINGS)}")
    if event.signing == NOT_REQUIRED:
        raise InvalidRequest(f"event {sequence} needed no signature when it was recorded")
    if event.signing is not None:
        raise Conflict(
            f"event {sequence} was signed in its act, as its site required when it was recorded"
        )
    _signable(session, event, actor)
    if tickets is not None and tickets.performer:
        # a single sign-on user re-authenticated at the provider for this signature (the
        # event and order are in its purpose, the page's path)
        consume_ticket(
            session,
            token=tickets.performer,
            purpose=tickets.purpose,
            subject=tickets.subject,
            witness=False,
            now=now,
            user_id=actor.user_id,
        )
    else:
        authenticate(session, actor=actor, email=email, password=password, now=now, policy=policy)
    return add_signature(session, event=event, signer=actor, meaning=meaning, now=now)


def _signable(session: Session, event: CustodyEvent, signer: Actor) -> tuple[str, bool]:
    """The step an event records and whether it needs a witness, if its site signs it and the
    signer acts for that site."""
    site = session.get(Site, event.site_id)
    assert site is not None
    if signer.site_id != site.id:
        raise Forbidden(f"this step is signed at {site.code}, where it happened")
    steps = critical_steps(session, site)
    step = step_of(event.action, event.batch_state.value if event.batch_state else None)
    if step not in steps:
        raise InvalidRequest(f"{step} is not a step {site.code} signs; there is nothing to sign")
    return step, steps[step]


def add_signature(
    session: Session, *, event: CustodyEvent, signer: Actor, meaning: str, now: dt.datetime
) -> Signature:
    """A signature after the act by an authenticated signer, if the rules allow it
    (domain.signatures: performed, verified or approved by the person who recorded the step;
    a witness is someone else of its site), bound to the hash of the record it signs. A QA
    release whose signatures are complete lets its product bags leave."""
    step, witness_required = _signable(session, event, signer)
    existing = _signatures(session, event)
    check_signature(
        step=step,
        meaning=meaning,
        role=signer.role,
        signer_id=signer.user_id,
        actor_id=event.actor_id,
        existing=[(row.signer_id, row.meaning) for row in existing],
        witness_required=witness_required,
    )
    row = _signature(session, event, signer, meaning, now, None)
    session.flush()
    meanings = [r.meaning for r in existing] + [meaning]
    complete = status(meanings, required=witness_required) == "signed"
    if step == "release" and event.batch_id is not None and complete:
        batch = session.get(Batch, event.batch_id)
        if batch is not None and batch.release_signed_at is None:
            batch.release_signed_at = now
            session.add(batch)
            session.flush()
    return row


def authenticate(
    session: Session,
    *,
    actor: Actor,
    email: str,
    password: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> None:
    """The two components of an electronic signature, again: the signer's own e-mail and
    password. A failure counts towards the lock-out (the caller commits even when this
    raises SignatureRefused)."""
    if email.strip().lower() != actor.email:
        raise SignatureRefused("sign with your own e-mail and password")
    if check_password(session, email=email, password=password, now=now, policy=policy) is None:
        raise SignatureRefused(
            "the e-mail or password is wrong (repeated failures pause signing in from here)"
        )
    _own_password(session, email)


def _own_password(session: Session, email: str) -> None:
    """A temporary password is one an admin has seen: it signs nothing until its owner has
    changed it (else an admin could sign, or witness, as someone else)."""
    user = session.exec(select(User).where(User.email == email.strip().lower())).one()
    if user.must_change_password:
        raise SignatureInvalid(
            f"{user.email} still has a temporary password, which signs nothing: sign in and "
            "change it first"
        )


def authenticate_witness(
    session: Session,
    *,
    site_id: int,
    email: str,
    password: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> Actor:
    """A second person, present: their own e-mail and password, and a user of the site where
    the step happens. A failure counts towards their lock-out."""
    found = check_password(session, email=email, password=password, now=now, policy=policy)
    if found is None:
        raise SignatureRefused(
            "the witness's e-mail or password is wrong (repeated failures pause signing in "
            "from here)"
        )
    witness, _key = found
    _own_password(session, email)
    if witness.site_id != site_id:
        raise SignatureRefused("the witness must be a user of the site where the step happens")
    return witness


def step_requirement(session: Session, site_id: int, step: str) -> bool | None:
    """None when the site does not sign ``step`` now; else whether it needs a witness."""
    site = session.get(Site, site_id)
    assert site is not None
    return critical_steps(session, site).get(step)


def signature_status(
    session: Session, events: Sequence[Step], signed: Mapping[int, Sequence[Signature]]
) -> dict[int, SignatureStatus]:
    """Whether each event needs a signature, and whether ``signed`` (its signatures, by event
    id) gives it what it needs. An event is judged by what its step needed when it was
    recorded; one recorded before that was kept, by its site's rules as they are."""
    steps: dict[str, dict[str, bool]] | None = None
    result: dict[int, SignatureStatus] = {}
    for event in events:
        if event.signing is not None:
            required = required_by(event.signing)
        else:
            if steps is None:
                steps = {
                    site.code: critical_steps(session, site)
                    for site in session.exec(select(Site)).all()
                }
            required = steps[event.site].get(step_of(event.action, event.batch_status))
        meanings = [row.meaning for row in signed.get(event.id, [])]
        result[event.id] = status(meanings, required=required)  # type: ignore[assignment]
    return result


def _signatures(session: Session, event: CustodyEvent) -> list[Signature]:
    return list(session.exec(select(Signature).where(Signature.event_id == event.id)).all())


def _event(session: Session, order_id: int | None, sequence: int, coi: str) -> CustodyEvent:
    event = session.exec(
        select(CustodyEvent).where(
            CustodyEvent.order_id == order_id, CustodyEvent.sequence == sequence
        )
    ).first()
    if event is None:
        raise NotFound(f"order {coi} has no event {sequence}")
    return event


def _site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    assert site is not None
    return site
