"""QA's review queue: refused scans and events flagged for review, of the orders QA may see (and
the refusals at QA's own site that name no bag). Each is closed once: with a correction of the
event, or with a signed "reviewed, no action" note (e-mail and password again), bound to the
hash of the record reviewed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.db.models import CustodyEvent, Order, RefusedScan, Review, User
from services.domain.audit import link, review_content
from services.domain.custody import Actor, Role
from services.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from services.domain.triage import RANK, Severity, refusal_severity
from services.operations import access, signing
from services.operations.passwords import LoginPolicy

REFUSAL, EVENT = "refused_scan", "custody_event"
REVIEWING_ROLES = frozenset({Role.QA})
MANY_AT_ONCE = 50  # review items one note and one signature close together, at most


@dataclass(frozen=True)
class Item:
    source: str
    source_id: int
    coi: str | None
    what: str  # the action scanned, or the event's
    barcode: str | None
    code: str | None  # a refusal's code
    detail: str
    site: str | None
    recorded_at: dt.datetime
    sequence: int | None  # an event's, for a correction
    # a wrong patient is critical, a scan in the wrong place a warning, a double scan
    # information; an event flagged for review (a late scan) a warning
    severity: Severity = Severity.WARNING


def _qa(actor: Actor) -> None:
    if actor.role not in REVIEWING_ROLES:
        raise Forbidden("the review queue is QA's")


def queue(session: Session, actor: Actor, *, limit: int = 200) -> list[Item]:
    """What waits for QA, newest first."""
    _qa(actor)
    visible = select(Order.id).where(access.order_condition(actor))
    reviewed_refusals = select(Review.source_id).where(Review.source == REFUSAL)
    reviewed_events = select(Review.source_id).where(Review.source == EVENT)
    cois = {
        order.id: order.coi
        for order in session.exec(select(Order).where(access.order_condition(actor)))
    }
    refusals = session.exec(
        select(RefusedScan)
        .where(
            col(RefusedScan.id).not_in(reviewed_refusals),
            col(RefusedScan.order_id).in_(visible)
            | (col(RefusedScan.order_id).is_(None) & (RefusedScan.site_id == actor.site_id)),
        )
        .order_by(col(RefusedScan.id).desc())
        .limit(limit)
    ).all()
    events = session.exec(
        select(CustodyEvent)
        .where(
            col(CustodyEvent.needs_review).is_(True),
            col(CustodyEvent.id).not_in(reviewed_events),
            col(CustodyEvent.order_id).in_(visible),
        )
        .order_by(col(CustodyEvent.id).desc())
        .limit(limit)
    ).all()
    items = [
        Item(
            source=REFUSAL,
            source_id=row.id or 0,
            coi=cois.get(row.order_id) if row.order_id else None,
            what=row.action,
            barcode=row.barcode,
            code=row.code,
            detail=row.detail,
            site=row.site_code,
            recorded_at=row.recorded_at,
            sequence=None,
            severity=refusal_severity(row.code),
        )
        for row in refusals
    ] + [
        Item(
            source=EVENT,
            source_id=row.id or 0,
            coi=cois.get(row.order_id),
            what=row.action,
            barcode=None,
            code=None,
            detail=row.review_reason or "flagged for review",
            site=(row.identity or {}).get("site"),
            recorded_at=row.recorded_at,
            sequence=row.sequence,
        )
        for row in events
    ]
    newest = sorted(items, key=lambda item: item.recorded_at, reverse=True)[:limit]
    return sorted(newest, key=lambda item: RANK[item.severity])  # stable: newest first within


def _record(session: Session, actor: Actor, source: str, source_id: int) -> tuple[str, int | None]:
    """The reviewed record's hash and order, if QA may see it and it has not been reviewed."""
    if source not in (REFUSAL, EVENT):
        raise InvalidRequest("a review is of a refused scan or of an event")
    row: RefusedScan | CustodyEvent | None = (
        session.get(RefusedScan, source_id)
        if source == REFUSAL
        else session.get(CustodyEvent, source_id)
    )
    if row is None:
        raise NotFound(f"no {source.replace('_', ' ')} {source_id} to review")
    order = session.get(Order, row.order_id) if row.order_id else None
    if order is not None:
        access.visible_order(session, actor, order, f"{source.replace('_', ' ')} {source_id}")
    elif getattr(row, "site_id", None) != actor.site_id:
        raise NotFound(f"no {source.replace('_', ' ')} {source_id} to review")
    exists = session.exec(
        select(Review).where(Review.source == source, Review.source_id == source_id)
    ).first()
    if exists is not None:
        raise Conflict(f"reviewed already, by {exists.reviewer_email}")
    return row.hash, row.order_id


def _seal(session: Session, actor: Actor, row: Review, record_hash: str) -> Review:
    user = session.get(User, actor.user_id)
    assert user is not None
    row.printed_name = user.name
    row.reviewer_email = user.email
    row.record_hash = record_hash
    row.hash = link(record_hash, review_content(row))
    session.add(row)
    session.flush()
    return row


def no_action(
    session: Session,
    *,
    actor: Actor,
    source: str,
    source_id: int,
    note: str,
    email: str,
    password: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> Review:
    """A "reviewed, no action" note, signed with e-mail and password: the one-item case of
    no_action_many. The caller commits even when this raises SignatureRefused, so that a wrong
    password counts towards the lock-out."""
    (review,) = no_action_many(
        session,
        actor=actor,
        items=[(source, source_id)],
        note=note,
        email=email,
        password=password,
        now=now,
        policy=policy,
    )
    return review


def no_action_many(
    session: Session,
    *,
    actor: Actor,
    items: list[tuple[str, int]],
    note: str,
    email: str,
    password: str,
    now: dt.datetime,
    policy: LoginPolicy,
) -> list[Review]:
    """Several related items (the same order's double scans, one scanner's misreads) closed
    with one "reviewed, no action" note and one signature: every one checked first, then one
    authentication, then a review of each, each bound to its own record's hash. All or none:
    an item reviewed meanwhile refuses the lot (409). The caller commits even when this raises
    SignatureRefused, so that a wrong password counts towards the lock-out."""
    _qa(actor)
    note = note.strip()
    if not note:
        raise InvalidRequest("say what you found: the note is the review")
    chosen = list(dict.fromkeys(items))
    if not chosen:
        raise InvalidRequest("choose the items to close: tick each one")
    if len(chosen) > MANY_AT_ONCE:
        raise InvalidRequest(f"close at most {MANY_AT_ONCE} items at once")
    records = [
        (source, source_id, *_record(session, actor, source, source_id))
        for source, source_id in chosen
    ]
    signing.authenticate(
        session, actor=actor, email=email, password=password, now=now, policy=policy
    )
    closed = []
    for source, source_id, record_hash, order_id in records:
        row = Review(
            source=source,
            source_id=source_id,
            order_id=order_id,
            outcome="no_action",
            note=note,
            reviewer_id=actor.user_id,
            reviewed_at=now,
            printed_name="",
            reviewer_email="",
            record_hash="",
            hash="",
        )
        closed.append(_seal(session, actor, row, record_hash))
    return closed


def corrected(
    session: Session,
    *,
    actor: Actor,
    event_id: int,
    reason: str,
    now: dt.datetime,
    password: str | None,
    policy: LoginPolicy,
) -> Review:
    """Close an event's review with a correction of it (a new event, with the reason, signed
    with the reviewer's password: the caller commits even when this raises SignatureRefused,
    so that a wrong password counts for the client)."""
    _qa(actor)
    record_hash, order_id = _record(session, actor, EVENT, event_id)
    event = session.get(CustodyEvent, event_id)
    order = session.get(Order, order_id)
    assert event is not None
    assert order is not None
    correction = signing.correct_event(
        session,
        actor=actor,
        coi=order.coi,
        sequence=event.sequence,
        reason=reason,
        now=now,
        password=password,
        policy=policy,
    )
    row = Review(
        source=EVENT,
        source_id=event_id,
        order_id=order_id,
        outcome="corrected",
        note=reason.strip(),
        correction_id=correction.id,
        reviewer_id=actor.user_id,
        reviewed_at=now,
        printed_name="",
        reviewer_email="",
        record_hash="",
        hash="",
    )
    return _seal(session, actor, row, record_hash)


def pending_count(session: Session, actor: Actor) -> int:
    return len(queue(session, actor)) if actor.role in REVIEWING_ROLES else 0
