"""GS1 EPCIS 2.0: an order's record as an EPCISDocument, the events queried (a subset of the
EPCIS 2.0 REST binding, scoped by the caller's access), and capture of a partner's events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Response, request
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field

from services.domain.epcis import Uris, document
from services.domain.errors import DomainError, InvalidRequest
from services.operations import epcis, epcis_query
from services.operations.queries import coi_value
from services.operations.scans import ScanInput
from services.web import bodies, scanning  # scanning imports this package in turn
from services.web.api.blueprint import api
from services.web.api.schemas import OrderPath
from services.web.errors import problem
from services.web.state import current_actor, state, unit_of_work, utcnow

tag = Tag(name="epcis", description="GS1 EPCIS 2.0: export, query and capture")
LD_JSON = "application/ld+json"
CAPTURE_MAX_BYTES = 4 * 1024 * 1024
CAPTURE_MAX_EVENTS = 500
# list items and object members in a capture's events: a handoff we record has about 15, a
# partner's event with its sensor readings a few dozen
CAPTURE_MAX_VALUES = 50 * CAPTURE_MAX_EVENTS
_DOCUMENT = {"type": "object", "description": "An EPCIS 2.0 JSON-LD document"}


def uris() -> Uris:
    return Uris(state().settings.epcis_base_uri.rstrip("/"))


def _ld(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype=LD_JSON)


@api.before_request
def _room_for_a_capture() -> None:
    if request.endpoint == "api.capture_events":
        request.max_content_length = CAPTURE_MAX_BYTES


@api.get(
    "/orders/<coi>/epcis",
    tags=[tag],
    responses={200: {"content": {LD_JSON: {"schema": _DOCUMENT}}}},
)
def export_order(path: OrderPath) -> Response:
    """The order's record as an EPCISDocument (JSON-LD with GS1's context): one event per
    record, each named by its CBV 2.0 event hash."""
    with unit_of_work() as uow:
        body = epcis.export_order(
            uow.session, actor=current_actor(), coi=coi_value(path.coi), uris=uris(), now=utcnow()
        )
    return _ld(body)


class EventsQuery(BaseModel):
    """EPCIS 2.0 query parameters (several values: separated by |)."""

    model_config = ConfigDict(populate_by_name=True)

    eventType: str | None = Field(default=None, max_length=200)  # noqa: N815 - EPCIS's names
    GE_eventTime: str | None = Field(default=None, max_length=64)
    LT_eventTime: str | None = Field(default=None, max_length=64)
    EQ_bizStep: str | None = Field(default=None, max_length=500)
    EQ_disposition: str | None = Field(default=None, max_length=500)
    MATCH_epc: str | None = Field(default=None, max_length=2000)
    MATCH_anyEPC: str | None = Field(default=None, max_length=2000)
    perPage: str | None = Field(default=None, max_length=8)  # noqa: N815
    nextPageToken: str | None = Field(default=None, max_length=200)  # noqa: N815


class EventPath(BaseModel):
    event_id: str = Field(max_length=200, description="The eventID (percent-encoded)")


@api.get(
    "/epcis/events",
    tags=[tag],
    responses={200: {"content": {LD_JSON: {"schema": _DOCUMENT}}}},
)
def query_events(query: EventsQuery) -> Response:
    """The events you may see that match, in their record's order, a page at a time; while
    more remain, a Link header (rel="next") carries the next page's nextPageToken."""
    args = query.model_dump()
    parsed = epcis_query.parse_query(args)
    with unit_of_work() as uow:
        page = epcis_query.query_events(
            uow.session, actor=current_actor(), query=parsed, uris=uris()
        )
    body = document([], uris=uris(), created=utcnow(), kind="EPCISQueryDocument")
    body["epcisBody"] = {
        "queryResults": {
            "queryName": "SimpleEventQuery",
            "resultsBody": {"eventList": page.events},
        }
    }
    response = _ld(body)
    if page.next is not None:
        following = {k: v for k, v in args.items() if v is not None and k != "nextPageToken"}
        following["nextPageToken"] = epcis_query.page_token(page.next)
        response.headers["Link"] = f'<{request.base_url}?{urlencode(following)}>; rel="next"'
    return response


@api.get(
    "/epcis/events/<path:event_id>",
    tags=[tag],
    responses={200: {"content": {LD_JSON: {"schema": _DOCUMENT}}}},
)
def read_event(path: EventPath) -> Response:
    """One event by its eventID (ni:///sha-256;...?ver=CBV2.0, percent-encoded)."""
    event_id = path.event_id
    if "?" not in event_id and request.args.get("ver"):  # an unencoded "?ver=CBV2.0"
        event_id += f"?ver={request.args['ver']}"
    if event_id.startswith("ni:/sha-256"):  # a proxy may fold the ///
        event_id = event_id.replace("ni:/", "ni:///", 1)
    with unit_of_work() as uow:
        event = epcis_query.event_by_id(
            uow.session, actor=current_actor(), event_id=event_id, uris=uris()
        )
    body = document([event], uris=uris(), created=utcnow())
    return _ld(body)


@api.post(
    "/epcis/capture",
    tags=[tag],
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
    openapi_extensions={
        "requestBody": {
            "required": True,
            "content": {LD_JSON: {"schema": _DOCUMENT}, "application/json": {"schema": _DOCUMENT}},
        }
    },
)
def capture_events() -> Response:
    """Capture an EPCISDocument of ObjectEvents from a partner's system: departing, shipping or
    transporting (a pickup), arriving (a delivery), receiving (a receipt). At most 500 events
    holding at most 25,000 values (list items and object members), counted before anything
    else (422 invalid_request); then it is checked against the EPCIS 2.0 schema (422
    invalid_epcis with the schema's errors); then each event goes
    through the same custody rules as a scan, refusals kept on record; the same eventID twice
    records once (its sender's: eventIDs are namespaced by the capturing site, so another
    site's same eventID is another event). The answer says, event by event, what was accepted
    and what was refused."""
    try:
        doc = bodies.loads(request.get_data() or b"null")
    except (ValueError, UnicodeDecodeError):
        return problem("invalid_epcis", "Not an EPCIS document", "the body is not JSON", 422)
    # counted before the schema is asked or an event is read: each costs in proportion to
    # what the events hold, and a 4 MiB body holds tens of thousands of events
    events, values = epcis.capture_size(doc, most_values=CAPTURE_MAX_VALUES)
    if events > CAPTURE_MAX_EVENTS:
        raise InvalidRequest(
            f"at most {CAPTURE_MAX_EVENTS} events per capture, and this one has {events}; split it"
        )
    if values > CAPTURE_MAX_VALUES:
        raise InvalidRequest(
            f"at most {CAPTURE_MAX_VALUES} values (list items and object members) in the "
            "events of one capture: an event we record names one bag or one shipment; split it"
        )
    errors = epcis.schema_errors(doc)
    if errors:
        return problem(
            "invalid_epcis",
            "Not an EPCIS document",
            f"the document is not valid EPCIS 2.0: {errors[0]['path']}: {errors[0]['message']}",
            422,
            errors=errors,
        )
    captured = epcis.read_capture(doc, uris())
    actor = current_actor()
    results = []
    for item in captured:
        results.append(_capture_one(actor, item))
    accepted = sum(1 for r in results if r["accepted"])
    return Response(
        json.dumps({"accepted": accepted, "refused": len(results) - accepted, "events": results}),
        status=200,
        mimetype="application/json",
    )


def _capture_one(actor: Any, item: epcis.Captured) -> dict[str, Any]:
    answer: dict[str, Any] = {"index": item.index, "eventID": item.event_id}
    if item.problem is not None or item.action is None or item.barcode is None:
        return {
            **answer,
            "accepted": False,
            "code": "invalid_request",
            "detail": item.problem or "not a handoff",
        }
    try:
        with unit_of_work() as uow:  # the sender's own id, and no replay of what it may not see
            event_id = epcis.capture_scan_id(uow.session, actor=actor, event_id=item.event_id)
    except DomainError as error:
        return {**answer, "accepted": False, "code": error.code, "detail": error.detail}
    scan = ScanInput(
        barcode=item.barcode,
        action=item.action,
        site=item.site or "",
        event_id=event_id,
        occurred_at=item.occurred_at,
        shipment=item.shipment,
    )
    try:
        outcome, result = scanning.submit_scan(actor, scan)
    except DomainError as error:
        return {**answer, "accepted": False, "code": error.code, "detail": error.detail}
    return {
        **answer,
        "accepted": True,
        "replayed": outcome.replayed,
        "action": item.action.value,
        "sequences": [event.sequence for event in result.events],
        "bags": [event.din for event in result.events],
    }
