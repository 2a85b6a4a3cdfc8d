"""Corrections and electronic signatures (21 CFR Part 11): nothing recorded is ever edited.

A correction is a new event pointing at the one it corrects, with a reason, by QA or an admin
of a site the order names. A signature on a critical step is given by re-entering one's e-mail
and password (two components), states its meaning and is bound to the hash of the record it
signs; a site may require a second person's (witness) signature on a step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from sqlmodel import Session, select

from services.db.models import Batch, CustodyEvent, Signature, SignatureRule, Site, Unit, User
from services.domain.audit import signature_content, signature_hash
from services.domain.batches import BatchState
from services.domain.custody import BATCH_STATUS, CORRECT, DISPOSITIONS, Actor, Role, SiteKind
from services.domain.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    SignatureInvalid,
    SignatureRefused,
    SignatureRequired,
)
from services.domain.signatures import (
    MEANINGS,
    WITNESS,
    check_signature,
    correction_meaning,
    status,
)
from services.operations.access import order_by_coi
from services.operations.orders import lock_order
from services.operations.passwords import LoginPolicy, check_password
from services.operations.record import append_event

CORRECTING_ROLES = frozenset({Role.QA, Role.ADMIN})
# the critical steps when a site has configured none: (step, witness required)
DEFAULT_STEPS: dict[SiteKind, dict[str, bool]] = {
    SiteKind.MANUFACTURING: {"receive": False, "release": False},
    SiteKind.TREATMENT: {"infuse": False},
}
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
    if not password:
        raise SignatureRequired("a correction is signed: give your password with it")
    order = lock_order(session, order.id)
    target = _event(session, order.id, sequence, order.coi)
    signer = check_password(session, email=actor.email, password=password, now=now, policy=policy)
    if signer is None:
        raise SignatureInvalid(
            "the password is wrong (repeated failures make this device wait before trying again)"
        )
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
    )
    user = session.get(User, actor.user_id)
    assert user is not None
    signature = Signature(
        event_id=correction.id,  # type: ignore[arg-type]
        signer_id=actor.user_id,
        printed_name=user.name,
        meaning=correction_meaning(actor.role),
        witness=False,
        signed_at=now,
        signer_email=user.email,
        record_hash=correction.hash,
    )
    signature.hash = signature_hash(correction.hash, signature_content(signature))
    session.add(signature)
    session.flush()
    return correction


DISPOSITION = "disposition"
ALWAYS_SIGNED = {DISPOSITION: False}
"""Steps signed at every site, whatever it configures: QA's disposition of a held bag."""


def step_of(action: str, batch_state: str | None) -> str:
    """The step an event records, as sites name their critical steps (a QA release is one)."""
    if action == BATCH_STATUS and batch_state == BatchState.RELEASED.value:
        return "release"
    if action in DISPOSITIONS:
        return DISPOSITION
    return action


def critical_steps(session: Session, site: Site) -> dict[str, bool]:
    rows = session.exec(select(SignatureRule).where(SignatureRule.site_id == site.id)).all()
    return _steps(site, rows)


def _steps(site: Site, rows: Sequence[SignatureRule]) -> dict[str, bool]:
    if rows:
        configured = {row.step: row.witness_required for row in rows}
    else:
        configured = dict(DEFAULT_STEPS.get(site.kind, {}))
    return {**ALWAYS_SIGNED, **configured}


def set_critical_step(
    session: Session, *, site: Site, step: str, witness: bool, required: bool
) -> None:
    """Configure one step of a site (the defaults are copied in first, then changed)."""
    current = critical_steps(session, site)
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
) -> Signature:
    """Sign event ``sequence`` of the order. The caller commits even when this raises
    SignatureRefused, so that a wrong password counts towards the lock-out."""
    order = order_by_coi(session, actor, coi)
    event = _event(session, order.id, sequence, order.coi)
    if meaning not in MEANINGS:
        raise InvalidRequest(f"a signature means one of {', '.join(MEANINGS)}")
    _signable(session, event, actor)
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
    """A signature by an authenticated signer, if the rules allow it (domain.signatures),
    bound to the hash of the record it signs."""
    step, witness_required = _signable(session, event, signer)
    existing = _signatures(session, event)
    check_signature(
        step=step,
        meaning=meaning,
        role=signer.role,
        signer_id=signer.user_id,
        existing=[(row.signer_id, row.meaning) for row in existing],
        witness_required=witness_required,
    )
    actor = signer
    user = session.get(User, actor.user_id)
    assert user is not None
    row = Signature(
        event_id=event.id,  # type: ignore[arg-type]
        signer_id=actor.user_id,
        printed_name=user.name,
        meaning=meaning,
        witness=meaning == WITNESS,
        signed_at=now,
        signer_email=user.email,
        record_hash=event.hash,
    )
    row.hash = signature_hash(event.hash, signature_content(row))
    session.add(row)
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
            "the e-mail or password is wrong (repeated failures lock the account)"
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
            "the witness's e-mail or password is wrong (repeated failures lock the account)"
        )
    witness, _key = found
    if witness.site_id != site_id:
        raise SignatureRefused("the witness must be a user of the site where the step happens")
    return witness


def requirement(session: Session, event: CustodyEvent) -> bool | None:
    """None when the event's site does not sign its step; else whether it needs a witness."""
    step = step_of(event.action, event.batch_state.value if event.batch_state else None)
    return step_requirement(session, event.site_id, step)


def step_requirement(session: Session, site_id: int, step: str) -> bool | None:
    site = session.get(Site, site_id)
    assert site is not None
    return critical_steps(session, site).get(step)


def signature_status(
    session: Session, events: Sequence[Step], signed: Mapping[int, Sequence[Signature]]
) -> dict[int, SignatureStatus]:
    """Whether each event needs a signature, and whether ``signed`` (its signatures, by event
    id) gives it what it needs."""
    rules: dict[int, list[SignatureRule]] = {}
    for row in session.exec(select(SignatureRule)).all():
        rules.setdefault(row.site_id, []).append(row)
    steps = {
        site.code: _steps(site, rules.get(site.id, []))  # type: ignore[arg-type]
        for site in session.exec(select(Site)).all()
    }
    result: dict[int, SignatureStatus] = {}
    for event in events:
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
