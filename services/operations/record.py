"""Appending to the record, in one place.

Every custody event and every refused scan is sealed into its chain, with the identities it
names as they are now (the order's COI, the bag's DIN and kind, the actor's e-mail, the site
codes), its news is written to the outbox, and a bag's legs follow it: all in the caller's
transaction, so they commit together or not at all. The record that opens an order's chain
(sequence 0) seals the order's own identity: who it is for, the product and its three sites.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm.session import make_transient_to_detached
from sqlmodel import Session, select

from services.db.cache import site_code
from services.db.models import Batch, ChainHead, CustodyEvent, Order, RefusedScan, Site, Unit
from services.db.uow import PENDING_FLAG
from services.domain.audit import (
    GENESIS,
    SALT_BYTES,
    SALTED_DIGEST,
    chain_key,
    content,
    identity_digest,
    link,
    site_seal,
)
from services.domain.custody import ENROLL, Actor, UnitState
from services.domain.notifications import Channel
from services.domain.signatures import NOT_REQUIRED
from services.domain.sla import moves_legs
from services.operations.deadlines import refresh_deadlines
from services.operations.notifications import (
    SOURCE_EVENT,
    enqueue_for_event,
    enqueue_for_refusal,
    event_payload,
    outbox_insert,
    outbox_parameters,
)

EVENTS, REFUSALS = "custody_events", "refused_scans"  # the two tables a chain runs through
LOCKED_HEADS = "locked_chain_heads"  # session.info: heads this transaction has read locked


class SiteLike(Protocol):
    @property
    def id(self) -> int | None: ...
    @property
    def code(self) -> str: ...


def heads_locked(session: Session, heads: list[ChainHead]) -> None:
    """Heads the caller has just read FOR UPDATE in this transaction (with the bags they
    lock, in one statement): seal uses them as they are, without reading them again. Kept
    here (the session's identity map holds its rows only weakly)."""
    transaction = session.get_transaction()
    held = session.info.get(LOCKED_HEADS)
    if held is None or held[0] is not transaction:
        rows: dict[str, ChainHead] = {}
        held = session.info[LOCKED_HEADS] = (transaction, rows)
    held[1].update((head.key, head) for head in heads)


def _locked_head(session: Session, key: str) -> ChainHead | None:
    held = session.info.get(LOCKED_HEADS)
    if held is None or held[0] is not session.get_transaction():
        return None
    return held[1].get(key)


def seal(session: Session, record: CustodyEvent | RefusedScan) -> ChainHead:
    """Give a record, not yet inserted, its place in its order's chain and its hash.

    The chain's head row is locked until commit, so two transactions appending to one chain
    (two scans of different bags of one order, or a scan and a refusal) take turns."""
    key = chain_key(record.order_id, getattr(record, "chain_site_id", None))
    head = _locked_head(session, key) or _lock_head(session, key)
    if head is None and record.order_id is None:
        # a site's first refusal: two of its users may be refused at once, and no row is
        # locked for them yet; the head is made if it is not there, then locked
        session.execute(_new_head_statement(session.get_bind().dialect.name), {"key": key})
        head = _lock_head(session, key)
    if head is None:
        # an order's first record: its order row is locked by the caller, so no race here;
        # the unattributed chain's head is created by the migration
        head = ChainHead(key=key, length=0, head=GENESIS)
    record.chain_position = head.length + 1
    record.prev_hash = head.head
    table = EVENTS if isinstance(record, CustodyEvent) else REFUSALS
    record.hash = link(record.prev_hash, content(table, record))
    head.length, head.head = record.chain_position, record.hash
    session.add(head)
    return head


def _lock_head(session: Session, key: str) -> ChainHead | None:
    return session.exec(
        select(ChainHead)
        .where(ChainHead.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


@functools.cache
def _new_head_statement(dialect: str) -> Any:
    """INSERT a chain's empty head ... ON CONFLICT DO NOTHING, in each dialect's words."""
    heads = ChainHead.__table__  # type: ignore[attr-defined]
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(heads)
        .values(key=sa.bindparam("key"), length=0, head=GENESIS)
        .on_conflict_do_nothing(index_elements=["key"])
    )


def _code(session: Session, site_id: int) -> str:
    return site_code(session, site_id)  # codes never change: kept per process, no query


def append_event(
    session: Session,
    *,
    order: Order,
    unit: Unit | None,
    action: str,
    from_state: UnitState | None,
    site: SiteLike,
    actor: Actor,
    occurred_at: dt.datetime,
    recorded_at: dt.datetime,
    scan_id: int | None = None,
    shipment_id: int | None = None,
    review_reason: str | None = None,
    batch: Batch | None = None,
    reason: str | None = None,
    corrects_id: int | None = None,
    details: dict[str, Any] | None = None,
    signing: str = NOT_REQUIRED,
) -> CustodyEvent:
    """The next event in the order's gapless sequence: a bag's step, or (without a bag) a
    batch's status change. The caller holds the order's lock. ``signing``: what the step
    needs by its site's rules now (an act that signs passes it; nothing else is signed)."""
    assert order.id is not None
    assert site.id is not None
    order.last_sequence += 1
    custodian_id = unit.custodian_site_id if unit else site.id
    event = CustodyEvent(
        order_id=order.id,
        sequence=order.last_sequence,
        unit_id=unit.id if unit else None,
        batch_id=batch.id if batch else None,
        batch_state=batch.state if batch and unit is None else None,
        reason=reason,
        scan_id=scan_id,
        action=action,
        from_state=from_state,
        to_state=unit.state if unit else None,
        site_id=site.id,
        actor_id=actor.user_id,
        custodian_site_id=custodian_id,
        shipment_id=shipment_id,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        needs_review=review_reason is not None,
        review_reason=review_reason,
        corrects_id=corrects_id,
        details=details,
        signing=signing,
        identity=_identity(
            order.coi,
            unit,
            actor=actor.email,
            site=site.code,
            custodian=_code(session, custodian_id),
        ),
    )
    head = seal(session, event)
    if not _write_at_once(session, event, head, order, unit):
        session.add(order)
        session.add(event)
        session.flush()
        enqueue_for_event(session, event=event, order=order, unit=unit)
    if unit is not None and moves_legs(unit.kind, action):
        # only an event that opens or closes a leg can move the bag's deadlines (whenever
        # it happened by the scanner's clock): the rest leave them as they are
        refresh_deadlines(session, unit=unit, order=order)
    return event


def _write_at_once(
    session: Session, event: CustodyEvent, head: ChainHead, order: Order, unit: Unit | None
) -> bool:
    """On PostgreSQL, the event, its chain's head, its order's sequence, its bag's new state
    and its news in the outbox, written in one statement (data-modifying CTEs: the three
    UPDATEs, the event's INSERT ... RETURNING id, the outbox's INSERT ... SELECT naming that
    id), where the ORM's flush and enqueue send five. The rows were read and locked by this
    transaction (the head by the bag's lock, heads_locked); they are left as the session
    would after flushing them. False, having written nothing: the caller flushes and enqueues
    (on SQLite, or when the head was not read locked with the bag, or rows are pending that
    the event may refer to)."""
    if (
        session.get_bind().dialect.name != "postgresql"
        or _locked_head(session, head.key) is not head
        or session.new
        or session.deleted
    ):
        return False
    rows: list[tuple[str, Any, dict[str, Any]]] = [("order", order, _changed(order))]
    if unit is not None:
        rows.append(("unit", unit, _changed(unit)))
    statement = _event_write(tuple((name, tuple(changed)) for name, _row, changed in rows))
    values = {f"e_{key}": getattr(event, key) for key in _EVENT_KEYS}
    values |= {"h_key": head.key, "h_length": head.length, "h_head": head.head}
    for name, row, changed in rows:
        values[f"{name}_row"] = row.id  # no column is called so: Core would SET it
        values |= {f"{name}_{key}": value for key, value in changed.items()}
    values |= outbox_parameters(
        order,
        source=SOURCE_EVENT,
        kind=event.action,
        payload=event_payload(session, event=event, order=order, unit=unit),
        now=event.recorded_at,
    )
    with session.no_autoflush:  # this statement is the flush
        event.id, pending = session.execute(statement, values).one()
    if pending:
        session.info[PENDING_FLAG] = True  # news for the workers: kicked after commit
    for row in (head, *(row for _name, row, _changed in rows)):
        # every change of these rows is written: mark them clean, as a flush does after its
        # UPDATEs (SQLAlchemy's own step; a flush would otherwise walk them again for nothing)
        state = sa.inspect(row)
        state._commit_all(state.dict, session.identity_map)
    make_transient_to_detached(event)
    session.add(event)  # persistent, as the flush would have left it
    return True


def _changed(row: Order | Unit) -> dict[str, Any]:
    """A loaded row's attributes changed since it was read, with their new values."""
    state = sa.inspect(row)
    return {
        attribute.key: attribute.value
        for attribute in state.attrs
        if attribute.history.has_changes()
    }


_EVENTS, _HEADS = CustodyEvent.__table__, ChainHead.__table__  # type: ignore[attr-defined]
_TABLES = {"order": Order.__table__, "unit": Unit.__table__}  # type: ignore[attr-defined]
_EVENT_KEYS = tuple(column.name for column in _EVENTS.c if column.name != "id")


@functools.cache
def _event_write(changes: tuple[tuple[str, tuple[str, ...]], ...]) -> sa.Select[Any]:
    """_write_at_once's statement for the rows and columns it changes, built once each."""

    def bound(name: str, column: sa.Column[Any]) -> Any:
        return sa.bindparam(name, type_=column.type)

    ctes = [
        sa.update(_HEADS)
        .where(_HEADS.c.key == sa.bindparam("h_key"))
        .values(length=bound("h_length", _HEADS.c.length), head=bound("h_head", _HEADS.c.head))
        .cte("sealed_head")
    ]
    for name, keys in changes:
        if keys:
            table = _TABLES[name]
            ctes.append(
                sa.update(table)
                .where(table.c.id == sa.bindparam(f"{name}_row"))
                .values({key: bound(f"{name}_{key}", table.c[key]) for key in keys})
                .cte(f"moved_{name}")
            )
    new_event = (
        sa.insert(_EVENTS)
        .values({key: bound(f"e_{key}", _EVENTS.c[key]) for key in _EVENT_KEYS})
        .returning(_EVENTS.c.id)
        .cte("new_event")
    )
    event_id = sa.select(new_event.c.id).scalar_subquery()
    news = outbox_insert("postgresql", event_id).cte("news")
    pending = (
        sa.select(sa.func.count())
        .select_from(news)
        .where(news.c.channel != Channel.FEED)
        .scalar_subquery()
    )
    return sa.select(event_id, pending).add_cte(*ctes)


def new_identity_salt() -> str:
    """An order's identity salt, made with the order (``Order.identity_salt``)."""
    return secrets.token_hex(SALT_BYTES)


def open_order(
    session: Session, *, order: Order, actor: Actor, site: Site, now: dt.datetime
) -> CustodyEvent:
    """The order's first record (sequence 0, before any bag's): it seals the order's identity,
    so that a patient reference, product or site changed later is found by `audit verify`.
    The patient reference is sealed as a digest keyed by the order's random salt, which no
    export gives a reader who may not see the reference."""
    assert order.id is not None
    assert site.id is not None
    sites = [
        session.get(Site, site_id)
        for site_id in (
            order.collection_site_id,
            order.manufacturing_site_id,
            order.treatment_site_id,
        )
    ]
    identity = _identity(order.coi, None, actor=actor.email, site=site.code, custodian=site.code)
    assert order.identity_salt is not None  # made with the order (new_identity_salt)
    identity["order"] = {
        "digest": SALTED_DIGEST,  # how the identities below are sealed
        "patient": identity_digest(order.identity_salt, order.patient_ref),
        "product": order.product,
        "sites": [site_seal(s.code, s.fin) for s in sites if s is not None],
    }
    # the second identifier (and a name, where recorded), sealed like the first: never in the
    # record itself
    if order.patient_birth_date is not None:
        identity["order"]["birth_date"] = identity_digest(
            order.identity_salt, order.patient_birth_date.isoformat()
        )
    if order.patient_name is not None:
        identity["order"]["name"] = identity_digest(order.identity_salt, order.patient_name)
    event = CustodyEvent(
        order_id=order.id,
        sequence=0,
        action=ENROLL,
        site_id=site.id,
        actor_id=actor.user_id,
        custodian_site_id=site.id,
        occurred_at=now,
        recorded_at=now,
        identity=identity,
        signing=NOT_REQUIRED,
    )
    seal(session, event)
    session.add(event)
    session.flush()
    enqueue_for_event(session, event=event, order=order, unit=None)
    return event


def append_refusal(
    session: Session,
    refusal: RefusedScan,
    *,
    coi: str | None,
    unit: Unit | None,
    actor: Actor,
    site: Site | None,
    shipment: str | None = None,
) -> RefusedScan:
    """Keep a refused scan: sealed into its order's chain (or, when it names no bag the
    scanner may see, the chain of the site its ``chain_site_id`` names), and news for the
    order's subscribers. ``shipment``: the shipment the scan named, as its code (a receipt
    shows the bags refused against it)."""
    identity = _identity(coi, unit, actor=actor.email, site=site.code if site else None)
    if shipment is not None:
        identity["shipment"] = shipment
    refusal.identity = identity
    seal(session, refusal)
    session.add(refusal)
    session.flush()
    enqueue_for_refusal(session, refusal=refusal)
    return refusal


def _identity(
    coi: str | None,
    unit: Unit | None,
    *,
    actor: str,
    site: str | None,
    custodian: str | None = None,
) -> dict[str, Any]:
    sealed: dict[str, Any] = {
        "coi": coi,
        "din": unit.din if unit else None,
        "kind": unit.kind.value if unit else None,
        "actor": actor,
        "site": site,
    }
    if custodian is not None:
        sealed["custodian"] = custodian
    return sealed
