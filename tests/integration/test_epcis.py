"""GS1 EPCIS 2.0 out and in: every exported document valid against GS1's schema, every eventID
equal to the reference implementation's CBV 2.0 event hash (epcis-event-hash-generator, the
oracle), capture through the custody rules, and the query paged and scoped."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import time_machine
from click.testing import CliRunner
from epcis_event_hash_generator.hash_generator import epcis_hashes_from_events
from epcis_event_hash_generator.json_to_py import event_list_from_epcis_document_json
from flask.cli import ScriptInfo
from jsonschema import Draft7Validator
from sqlmodel import func, select

from services import cli, epcis_schema
from services.db import UnitOfWork
from services.db.models import CustodyEvent, RefusedScan
from services.domain.custody import Action
from services.domain.identifiers import Coi, Din, label_payload
from services.operations import admin, labels, orders, passwords, scans
from tests.integration.test_condition import MINUTE, csv_file, now, upload
from tests.integration.test_vein_to_vein import bc, released_batch
from tests.world import PASSWORD, World

SHARED_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "epcis" / "EPCIS-JSON-Schema.json"
BASE = "https://vein2vein.example/id"


def oracle(doc: dict[str, Any]) -> list[str]:
    """The reference implementation's event hashes of a document's events."""
    return list(epcis_hashes_from_events(event_list_from_epcis_document_json(copy.deepcopy(doc))))


def valid(doc: dict[str, Any]) -> None:
    errors = sorted(epcis_schema.validator().iter_errors(doc), key=lambda e: str(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def test_the_shipped_schema_is_gs1s_own() -> None:
    if not SHARED_SCHEMA.exists():
        pytest.skip("the project's shared folder is not beside this checkout")
    shipped = Path(epcis_schema.__file__).with_name("EPCIS-JSON-Schema.json")
    assert shipped.read_bytes() == SHARED_SCHEMA.read_bytes()
    Draft7Validator.check_schema(json.loads(shipped.read_text()))


def whole_loop(world: World) -> tuple[str, str]:
    """An order from enrolment to infusion, with a correction and a hot logger file on the way
    back (a hold and QA's release)."""
    made = released_batch(world, "PAT-LOOP")
    coi = made["bag"]["coi"]
    (product,) = made["batch"]["products"]
    din = product["din"]
    for action in ("pack",):
        assert world.scan("op", bc(din), action, "MFG-1").status_code == 201
    start = now() - dt.timedelta(hours=3)
    with time_machine.travel(start, tick=True):
        shipment = world.ship([din], origin="MFG-1", destination="TRT-1", who="op")
    assert world.scan("courier", shipment["barcode"], "pickup", "MFG-1").status_code == 201
    assert world.scan("courier", shipment["barcode"], "deliver", "TRT-1").status_code == 201
    hot = csv_file(start + MINUTE, 150, lambda i: -140.0 if 60 <= i < 75 else -186.0)
    assert upload(world, shipment, hot, who="care").json["held"] == [din]
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        passwords.set_password(uow.session, email="qa@example.org", password=PASSWORD)
        uow.commit()
    released = world.post(
        "qa",
        f"/api/v1/units/{din}/disposition",
        {
            "decision": "release",
            "reason": "within stability data",
            "email": "qa@example.org",
            "password": PASSWORD,
        },
    )
    assert released.status_code == 201, released.json
    for action in ("receive", "store", "thaw"):
        extra = {"shipment": shipment["barcode"]} if action == "receive" else {}
        assert world.scan("care", bc(din), action, "TRT-1", **extra).status_code == 201
    assert world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-LOOP").status_code == 201
    corrected = world.post(
        "qa",
        f"/api/v1/orders/{coi}/corrections",
        {
            "sequence": 3,
            "reason": "scanned at the wrong bench",
            "signature": {"password": PASSWORD},
        },
    )
    assert corrected.status_code == 201, corrected.json
    return coi, din


def test_the_whole_loop_exports_valid_epcis_with_the_reference_event_hashes(world: World) -> None:
    coi, din = whole_loop(world)
    response = world.get("care", f"/api/v1/orders/{coi}/epcis")
    assert response.status_code == 200
    assert response.mimetype == "application/ld+json"
    doc = response.json
    valid(doc)
    events = doc["epcisBody"]["eventList"]
    timeline = world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
    assert len(events) == len(timeline)
    # every kind of event we emit, each named by the reference implementation's hash
    assert {e["v2v:action"] for e in events} >= {
        "enroll", "collect", "verify_label", "cryopreserve", "pack", "pickup", "deliver",
        "receive", "start_manufacturing", "batch_status", "produce", "release", "readings",
        "hold", "release_hold", "store", "thaw", "infuse", "correct",
    }  # fmt: skip
    assert [e["eventID"] for e in events] == oracle(doc)
    assert len({e["eventID"] for e in events}) == len(events)
    by_action = {e["v2v:action"]: e for e in events}
    collect = by_action["collect"]
    assert (collect["action"], collect["bizStep"], collect["disposition"]) == (
        "ADD",
        "commissioning",
        "active",
    )
    assert collect["ilmd"]["v2v:coi"] == f"{BASE}/coi/{coi}"
    produce = by_action["produce"]
    assert produce["type"] == "TransformationEvent"
    assert produce["outputEPCList"] == [f"{BASE}/din/{din}"]
    pickup = next(
        e for e in events if e["v2v:action"] == "pickup" and f"{BASE}/din/{din}" in e["epcList"]
    )
    assert (pickup["bizStep"], pickup["disposition"]) == ("shipping", "in_transit")
    assert pickup["bizTransactionList"][0]["type"] == "desadv"
    assert {s["type"] for s in pickup["sourceList"]} == {"possessing_party", "location"}
    assert (by_action["infuse"]["bizStep"], by_action["infuse"]["disposition"]) == (
        "dispensing",
        "dispensed",
    )
    readings = by_action["readings"]
    (element,) = readings["sensorElementList"]
    reports = element["sensorReport"]
    assert reports[0]["maxValue"] == -140.0
    assert any(r.get("exception") == "ALARM_CONDITION" for r in reports)
    # the correction: an errorDeclaration on the corrected event, naming the corrective one
    correction = by_action["correct"]
    (wrong,) = [e for e in events if e["v2v:sequence"] == 3]
    assert wrong["errorDeclaration"]["correctiveEventIDs"] == [correction["eventID"]]
    # the same record always exports the same events
    again = world.get("care", f"/api/v1/orders/{coi}/epcis").json
    assert again["epcisBody"]["eventList"] == events
    # one event by its eventID, and none for another network
    event_id = pickup["eventID"]
    one = world.get("care", f"/api/v1/epcis/events/{quote(event_id, safe='')}")
    assert one.status_code == 200, one.json
    assert one.json["epcisBody"]["eventList"] == [pickup]
    assert world.get("care2", f"/api/v1/epcis/events/{quote(event_id, safe='')}").status_code == 404
    assert world.get("care2", f"/api/v1/orders/{coi}/epcis").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_cli_exports_the_same_document(app: Any, world: World, tmp_path: Path) -> None:
    unit = world.bag_at("receive")
    target = tmp_path / "order.jsonld"
    result = CliRunner().invoke(
        cli.main,
        ["epcis", "export", unit["coi"], "-o", str(target)],
        obj=ScriptInfo(create_app=lambda: app),
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(target.read_text())
    valid(doc)
    api = world.get("op", f"/api/v1/orders/{unit['coi']}/epcis").json
    assert doc["epcisBody"] == api["epcisBody"]
    assert [e["eventID"] for e in doc["epcisBody"]["eventList"]] == oracle(doc)


def capture_doc(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T10:00:00.000Z",
        "epcisBody": {"eventList": events},
    }


def departing(shipment: str, site: str, event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": dt.datetime.now(dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [f"{BASE}/shipment/{shipment}"],
        "action": "OBSERVE",
        "bizStep": "departing",
        "disposition": "in_transit",
        "readPoint": {"id": f"{BASE}/site/{site}"},
    }
    if event_id:
        event["eventID"] = event_id
    return event


def test_capture_moves_bags_like_a_scan_refuses_like_one_and_records_once(world: World) -> None:
    bag = world.bag_at("pack")
    shipment = world.ship([bag["din"]])
    code = shipment["barcode"]
    wrong = departing(code, "MFG-1", "urn:uuid:" + str(uuid.uuid4()))
    right = departing(code, "APH-1", "urn:uuid:" + str(uuid.uuid4()))
    doc = capture_doc([wrong, right])
    first = world.post("courier", "/api/v1/epcis/capture", doc)
    assert first.status_code == 200, first.json
    assert first.json["accepted"] == 1
    refused, accepted = first.json["events"]
    assert (refused["accepted"], refused["code"]) == (False, "wrong_site")
    assert accepted["accepted"] is True
    assert accepted["bags"] == [bag["din"]]
    assert world.get("courier", f"/api/v1/units/{bag['din']}").json["state"] == "in_transit"
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        kept = uow.session.exec(select(RefusedScan).where(RefusedScan.code == "wrong_site")).all()
        events_before = uow.session.exec(select(func.count()).select_from(CustodyEvent)).one()
    assert len(kept) == 1
    # the same document again: the accepted event is a replay, nothing new is recorded
    second = world.post("courier", "/api/v1/epcis/capture", doc)
    assert second.json["events"][1]["replayed"] is True
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert (
            uow.session.exec(select(func.count()).select_from(CustodyEvent)).one() == events_before
        )
    # a document that is not EPCIS 2.0 is refused with the schema's own words
    bad = world.post("courier", "/api/v1/epcis/capture", {"type": "EPCISDocument", "epcisBody": {}})
    assert bad.status_code == 422
    assert bad.json["code"] == "invalid_epcis"
    assert bad.json["errors"]
    # another network's courier cannot move them
    stranger = world.post(
        "courier2", "/api/v1/epcis/capture", capture_doc([departing(code, "APH-1")])
    )
    assert stranger.json["events"][0]["accepted"] is False


def _orders_with_events(world: World, count: int) -> int:
    """``count`` orders of five records each (enrolment, collection, three scans), through the
    operations (quicker than the API for a thousand records)."""
    state = world.app.extensions["vein2vein"]
    moment = dt.datetime.now(dt.UTC)
    skew = dt.timedelta(minutes=5)
    with UnitOfWork(state.db.session_factory) as uow:
        session = uow.session
        actor = admin.actor_by_email(session, "aph@example.org")
        for n in range(count):
            order = orders.enroll_order(
                session,
                actor=actor,
                patient_ref=f"P-{n}",
                product="axi-cel",
                collection_site="APH-1",
                manufacturing_site="MFG-1",
                treatment_site="TRT-1",
                now=moment,
            )
            unit, _ = orders.register_collection(
                session,
                actor=actor,
                coi=order.coi,
                collected_at=moment,
                volume_ml=None,
                now=moment,
                max_clock_skew=skew,
            )
            labels.record_print(
                session, actor=actor, unit=unit, order=order, target="pdf", reason=None, now=moment
            )
            label = label_payload(Din.from_value(unit.din), Coi.from_value(order.coi))
            for action in (Action.VERIFY_LABEL, Action.CRYOPRESERVE, Action.PACK):
                scan = scans.ScanInput(
                    barcode=label if action is Action.VERIFY_LABEL else bc(unit.din),
                    action=action,
                    site="APH-1",
                    event_id=str(uuid.uuid4()),
                )
                scans.record_scan(session, actor=actor, scan=scan, now=moment, max_clock_skew=skew)
        uow.commit()
    return count * 5


def test_the_query_pages_through_a_thousand_events_and_shows_another_site_none(
    world: World,
) -> None:
    total = _orders_with_events(world, 200)
    seen: list[str] = []
    url = "/api/v1/epcis/events?perPage=100"
    pages = 0
    while url:
        response = world.get("aph", url)
        assert response.status_code == 200, response.json
        valid(response.json)
        assert response.json["type"] == "EPCISQueryDocument"
        seen += [
            e["eventID"]
            for e in response.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        ]
        pages += 1
        link = response.headers.get("Link")
        if link:
            target = urlsplit(link.split(";")[0].strip("<>"))
            assert "nextPageToken" in parse_qs(target.query)
            url = f"{target.path}?{target.query}"
        else:
            url = ""
    assert len(seen) == total == 1000
    assert len(set(seen)) == total
    assert pages == 10
    # filters: one kind of step, a time window, one bag
    packed = world.get("aph", "/api/v1/epcis/events?EQ_bizStep=packing&perPage=1000").json
    assert len(packed["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 200
    future = world.get("aph", "/api/v1/epcis/events?GE_eventTime=2999-01-01T00:00:00Z").json
    assert future["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == []
    first = world.get("aph", "/api/v1/epcis/events?perPage=1").json["epcisBody"]["queryResults"]
    epc = first["resultsBody"]["eventList"][0]["epcList"][0]
    one_coi = world.get("aph", f"/api/v1/epcis/events?MATCH_epc={quote(epc, safe='')}").json
    assert len(one_coi["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 1
    # another network's users see none of them
    for who in ("aph2", "op2", "courier2", "care2", "qa2", "admin2"):
        other = world.get(who, "/api/v1/epcis/events?perPage=1000").json
        assert other["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == [], who
    assert world.get("aph", "/api/v1/epcis/events?perPage=0").status_code == 422
    assert world.get("aph", "/api/v1/epcis/events?nextPageToken=nonsense").status_code == 422
    assert world.get("aph", "/api/v1/epcis/events?eventType=PizzaEvent").status_code == 422
