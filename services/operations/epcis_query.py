"""The EPCIS 2.0 query (a subset of the REST binding's SimpleEventQuery), scoped by the caller's
access, run in SQL a page at a time.

The records a page can hold are chosen by the database: the caller's visible orders, each
filter as a condition on the records (an event type, a bizStep or disposition as the actions
and batch states that read as it, a time window on the scanner's clock, an EPC as the orders
that own it), after the page token's (order, sequence), in that order, ``perPage`` and one at a
time. Only those are built as events (each order's context loaded once a page), and each filter
is held against the built event as well, so the SQL may only ever choose more than it should,
never fewer. A page's cost grows with the page (and an order's records), not with the record.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import Batch, CustodyEvent, Order, Unit
from services.domain.batches import BatchState
from services.domain.custody import EVENT_ACTIONS, Actor
from services.domain.epcis import EVENT_TYPES, Uris, steps_for
from services.domain.errors import DomainError, InvalidRequest, NotFound
from services.domain.identifiers import batch_number
from services.operations import access
from services.operations.epcis import (
    Context,
    context_of,
    contexts_of,
    declare_error,
    named_event,
)

MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class Query:
    event_types: tuple[str, ...] = ()
    ge_time: dt.datetime | None = None
    lt_time: dt.datetime | None = None
    biz_steps: tuple[str, ...] = ()
    dispositions: tuple[str, ...] = ()
    match_epc: tuple[str, ...] = ()
    match_any_epc: tuple[str, ...] = ()
    per_page: int = DEFAULT_PAGE
    after: tuple[int, int] | None = None  # (order id, sequence) of the last event returned

    def wants(self, event: Mapping[str, Any]) -> bool:
        """Whether a built event matches every filter: the last word on what a page holds."""
        moment = dt.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        if self.event_types and event["type"] not in self.event_types:
            return False
        if self.ge_time and moment < self.ge_time:
            return False
        if self.lt_time and moment >= self.lt_time:
            return False
        if self.biz_steps and not _matches(event.get("bizStep"), self.biz_steps, "BizStep-"):
            return False
        if self.dispositions and not _matches(event.get("disposition"), self.dispositions, "Disp-"):
            return False
        own = set(event.get("epcList", [])) | set(event.get("outputEPCList", []))
        if self.match_epc and not own & set(self.match_epc):
            return False
        every = own | set(event.get("inputEPCList", []))
        return not (self.match_any_epc and not every & set(self.match_any_epc))


def _matches(value: str | None, wanted: tuple[str, ...], prefix: str) -> bool:
    """A bare CBV word matches itself and its web vocabulary URI."""
    if value is None:
        return False
    forms = {value, f"https://ref.gs1.org/cbv/{prefix}{value}"}
    return bool(forms & set(wanted))


def parse_query(args: Mapping[str, str | None]) -> Query:
    """EPCIS 2.0 query parameters; a bad one is refused, naming it."""

    def words(name: str) -> tuple[str, ...]:
        raw = args.get(name)
        return tuple(w.strip() for w in raw.split("|") if w.strip()) if raw else ()

    def moment(name: str) -> dt.datetime | None:
        raw = args.get(name)
        if not raw:
            return None
        try:
            parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"{name}: {raw[:40]!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise InvalidRequest(f"{name}: the time needs an offset from UTC")
        return parsed

    types = words("eventType")
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise InvalidRequest(f"eventType: {', '.join(unknown)} is not an EPCIS event type")
    per_page = args.get("perPage")
    try:
        size = int(per_page) if per_page else DEFAULT_PAGE
    except ValueError:
        raise InvalidRequest("perPage is a whole number") from None
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(f"perPage is between 1 and {MAX_PAGE}")
    return Query(
        event_types=types,
        ge_time=moment("GE_eventTime"),
        lt_time=moment("LT_eventTime"),
        biz_steps=words("EQ_bizStep"),
        dispositions=words("EQ_disposition"),
        match_epc=words("MATCH_epc"),
        match_any_epc=words("MATCH_anyEPC"),
        per_page=size,
        after=_token(args.get("nextPageToken")),
    )


def page_token(after: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(after)).encode()).decode().rstrip("=")


_KEY_MAX = 2**62  # a token's numbers: what a BIGINT holds, with room


def _token(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        order_id, sequence = int(value[0]), int(value[1])
    except (ValueError, TypeError, IndexError, KeyError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("nextPageToken is not one this server gave") from None
    if not (-_KEY_MAX < order_id < _KEY_MAX and -_KEY_MAX < sequence < _KEY_MAX):
        raise InvalidRequest("nextPageToken is not one this server gave")
    return order_id, sequence


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]
    next: tuple[int, int] | None


# the filters as conditions on the records


class _NoMatch(Exception):
    """A filter that no record can meet: the page is empty, without asking the database."""


def _record_conditions(session: Session, query: Query, uris: Uris) -> list[Any]:
    """Conditions every record whose event matches must meet (they may admit more)."""
    action, state = col(CustodyEvent.action), col(CustodyEvent.batch_state)
    conditions: list[Any] = []
    if query.event_types:
        transformation = "TransformationEvent" in query.event_types
        objects = "ObjectEvent" in query.event_types
        if not (transformation or objects):
            raise _NoMatch
        if not (transformation and objects):
            # a TransformationEvent is a product's record of its batch; everything else an
            # ObjectEvent (a "produce" without a batch too, which the event then tells)
            conditions.append(action == "produce" if transformation else _not_transformation())
    if query.ge_time is not None:
        conditions.append(col(CustodyEvent.occurred_at) >= query.ge_time)
    if query.lt_time is not None:  # eventTime is to the millisecond: one more may read as less
        conditions.append(
            col(CustodyEvent.occurred_at) < query.lt_time + dt.timedelta(milliseconds=1)
        )
    for wanted, which, prefix in (
        (query.biz_steps, 0, "BizStep-"),
        (query.dispositions, 1, "Disp-"),
    ):
        if wanted:
            actions = [
                a
                for a in EVENT_ACTIONS
                if a != "batch_status" and _matches(steps_for(a)[which], wanted, prefix)
            ]
            states = [
                s
                for s in BatchState
                if _matches(steps_for("batch_status", s.value)[which], wanted, prefix)
            ]
            either: list[Any] = [action.in_(actions)] if actions else []
            if states:
                either.append(sa.and_(action == "batch_status", state.in_(states)))
            if _matches(steps_for("batch_status", None)[which], wanted, prefix):
                either.append(sa.and_(action == "batch_status", state.is_(None)))
            if not either:
                raise _NoMatch
            conditions.append(sa.or_(*either))
    for epcs in (query.match_epc, query.match_any_epc):
        if epcs:
            conditions.append(col(CustodyEvent.order_id).in_(_orders_of(session, epcs, uris)))
    return conditions


def _not_transformation() -> Any:
    without_batch = select(Unit.id).where(col(Unit.batch_id).is_(None))
    return sa.or_(
        col(CustodyEvent.action) != "produce",
        col(CustodyEvent.unit_id).is_(None),
        col(CustodyEvent.unit_id).in_(without_batch),
    )


def _orders_of(session: Session, epcs: tuple[str, ...], uris: Uris) -> list[int]:
    """The orders whose events may name any of these EPCs: every EPC of ours (a bag's DIN,
    an order's COI, a batch) belongs to one order."""
    dins = [d for d in (uris.parse(e, "din") for e in epcs) if d]
    cois = [c for c in (uris.parse(e, "coi") for e in epcs) if c]
    batches = []
    for code in (b for b in (uris.parse(e, "batch") for e in epcs) if b):
        try:
            batches.append(batch_number(code))
        except DomainError:
            continue
    orders: set[int] = set()
    if dins:
        orders |= set(session.exec(select(Unit.order_id).where(col(Unit.din).in_(dins))).all())
    if cois:
        found = session.exec(select(Order.id).where(col(Order.coi).in_(cois))).all()
        orders |= {order_id for order_id in found if order_id is not None}
    if batches:
        orders |= set(session.exec(select(Batch.order_id).where(col(Batch.id).in_(batches))).all())
    if not orders:
        raise _NoMatch
    return sorted(orders)


# pages


def _chunks(
    session: Session,
    actor: Actor,
    conditions: list[Any],
    after: tuple[int, int] | None,
    *,
    first: int,
) -> Iterator[list[CustodyEvent]]:
    """The records the actor may see that meet ``conditions``, after ``after``, in (order,
    sequence) order, a chunk at a time: ``first`` records, then twice as many each time (up to
    a thousand and one) while the events built from them are filtered out."""
    chunk = first
    while True:
        query = (
            select(CustodyEvent)
            .join(Order, col(Order.id) == col(CustodyEvent.order_id))
            .where(access.order_condition(actor), *conditions)
            .order_by(col(CustodyEvent.order_id), col(CustodyEvent.sequence))
            .limit(chunk)
        )
        if after is not None:
            query = query.where(
                sa.tuple_(col(CustodyEvent.order_id), col(CustodyEvent.sequence))
                > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        rows = list(session.exec(query).all())
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        after = (rows[-1].order_id, rows[-1].sequence)
        chunk = min(MAX_PAGE + 1, 2 * chunk)


class _Builder:
    """Records as events, the contexts of a chunk's orders loaded together."""

    def __init__(self, session: Session, uris: Uris) -> None:
        self.session, self.uris = session, uris
        self.contexts: dict[int, Context] = {}

    def load(self, records: list[CustodyEvent]) -> None:
        """The contexts of the records' orders, for those not loaded yet (a few queries)."""
        wanted = sorted({r.order_id for r in records} - set(self.contexts))
        if wanted:
            orders = self.session.exec(select(Order).where(col(Order.id).in_(wanted))).all()
            self.contexts.update(contexts_of(self.session, orders, self.uris))

    def context(self, order_id: int) -> Context:
        if order_id not in self.contexts:
            order = self.session.get(Order, order_id)
            assert order is not None
            self.contexts[order_id] = context_of(self.session, order, self.uris)
        return self.contexts[order_id]

    def event(self, record: CustodyEvent) -> dict[str, Any]:
        return named_event(self.session, self.context(record.order_id), record)

    def declare_errors(self, found: list[tuple[CustodyEvent, dict[str, Any]]]) -> None:
        """The errorDeclaration of each event a later record corrects (the hash leaves it out,
        so the event keeps its eventID; the order's export shows the same)."""
        by_id = {record.id: event for record, event in found}
        if not by_id:
            return
        corrections = self.session.exec(
            select(CustodyEvent)
            .where(
                CustodyEvent.action == "correct",
                col(CustodyEvent.corrects_id).in_(list(by_id)),
            )
            .order_by(col(CustodyEvent.order_id), col(CustodyEvent.sequence))
        ).all()
        for correction in corrections:
            corrective = self.event(correction)["eventID"]
            declare_error(by_id[correction.corrects_id], correction, corrective)


def query_events(session: Session, *, actor: Actor, query: Query, uris: Uris) -> Page:
    """The events the actor may see that match, in (order, sequence) order, a page at a time."""
    try:
        conditions = _record_conditions(session, query, uris)
    except _NoMatch:
        return Page([], None)
    builder = _Builder(session, uris)
    found: list[tuple[CustodyEvent, dict[str, Any]]] = []
    following = False
    for chunk in _chunks(session, actor, conditions, query.after, first=query.per_page + 1):
        builder.load(chunk)
        for record in chunk:
            event = builder.event(record)
            if not query.wants(event):
                continue
            if len(found) == query.per_page:
                following = True
                break
            found.append((record, event))
        if following:
            break
    builder.declare_errors(found)
    last = found[-1][0] if found else None
    after = (last.order_id, last.sequence) if following and last is not None else None
    return Page([event for _record, event in found], after)


def event_by_id(session: Session, *, actor: Actor, event_id: str, uris: Uris) -> dict[str, Any]:
    """One event by its eventID. The eventID is a hash of the event: nothing in the database
    finds it, so the records the actor may see are built a chunk at a time until it is met
    (the cost grows with what the actor may see; a query by EPC or time is the cheap way)."""
    builder = _Builder(session, uris)
    for chunk in _chunks(session, actor, [], None, first=DEFAULT_PAGE):
        builder.contexts.clear()  # a chunk's orders at a time, not every one met
        builder.load(chunk)
        for record in chunk:
            event = builder.event(record)
            if event["eventID"] == event_id:
                builder.declare_errors([(record, event)])
                return event
    raise NotFound("no EPCIS event with that eventID that you can see")
