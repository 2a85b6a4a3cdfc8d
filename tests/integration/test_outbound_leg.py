"""The whole outbound leg through the HTTP API: order -> collection -> ... -> manufacturing."""

from __future__ import annotations

import datetime as dt
import itertools

from services.domain.identifiers import Coi, Din, ParsedDin, check_character, parse_identifier
from tests.world import OUTBOUND, World


def test_full_outbound_leg(world: World) -> None:
    order = world.enroll("PAT-0001")
    assert order["state"] == "enrolled"
    coi = Coi.from_value(order["coi"])
    assert order["check_character"] == coi.check_character == check_character(order["coi"])
    assert order["barcode"] == f"&/{order['coi']}"
    assert order["coi"].startswith("CHA1001")  # the collection site's FIN

    unit = world.collect(order["coi"], volume_ml=212.5)
    assert unit["state"] == "collected"
    assert unit["coi"] == order["coi"]
    assert unit["custodian"] == "APH-1"
    din = Din.from_value(unit["din"])
    assert unit["check_character"] == din.check_character
    parsed = parse_identifier(unit["barcode"])  # the emitted barcode verifies its own flags
    assert isinstance(parsed, ParsedDin)
    assert parsed.din == din
    assert parsed.flags is not None
    assert parsed.flags.kind == "checksum"

    expected = {
        "verify_label": ("label_verified", "APH-1"),
        "cryopreserve": ("cryopreserved", "APH-1"),
        "pack": ("packed", "APH-1"),
        "pickup": ("in_transit", "COUR-1"),
        "deliver": ("delivered", "MFG-1"),
        "receive": ("received", "MFG-1"),
        "start_manufacturing": ("in_manufacturing", "MFG-1"),
    }
    shipment = None
    for action, who, site in OUTBOUND:
        if action == "pickup":
            shipment = world.ship([unit["din"]])
            assert shipment["state"] == "open"
            assert shipment["units"] == [unit["din"]]
        response = world.scan(who, unit["barcode"], action, site)
        assert response.status_code == 201, response.json
        state, custodian = expected[action]
        assert response.json["to_state"] == state
        assert response.json["din"] == unit["din"]
        assert response.json["coi"] == order["coi"]
        bag = world.get("op" if site.startswith("MFG") else "aph", f"/api/v1/units/{unit['din']}")
        assert bag.status_code == 200, bag.json
        assert (bag.json["state"], bag.json["custodian"]) == (state, custodian)
        if action == "pickup":
            assert bag.json["location"] == f"in transit with COUR-1 ({shipment['barcode']})"

    events = world.get("aph", f"/api/v1/units/{unit['din']}/events").json["events"]
    assert [e["action"] for e in events] == ["collect"] + [a for a, _, _ in OUTBOUND]
    assert [e["sequence"] for e in events] == list(range(1, 9))
    assert events[0]["from_state"] is None
    for before, after in itertools.pairwise(events):
        assert after["from_state"] == before["to_state"]
        assert after["recorded_at"] >= before["recorded_at"]
    assert events[4]["custodian"] == "COUR-1"
    assert events[4]["actor"] == "courier@example.org"

    assert shipment is not None
    final = world.get("aph", f"/api/v1/shipments/{shipment['barcode']}").json
    assert final["state"] == "received"

    full = world.get("care", f"/api/v1/orders/{order['coi']}").json
    assert full["state"] == "in_progress"
    assert full["patient_ref"] == "PAT-0001"
    assert [u["state"] for u in full["units"]] == ["in_manufacturing"]


def test_keyboard_entry_and_label_code_work_as_barcodes(world: World) -> None:
    order = world.enroll()
    unit = world.collect(order["coi"])
    din = Din.from_value(unit["din"])
    coi = Coi.from_value(order["coi"])
    world.label("aph", din.value)
    # the label checked by keyboard: both identifiers with their check characters
    typed = world.scan("aph", din.keyboard_entry, "verify_label", "APH-1", coi=coi.keyboard_entry)
    assert typed.status_code == 201, typed.json
    label_code = din.barcode + coi.barcode  # what the bag label's 2-D code carries
    scanned = world.scan("aph", label_code, "cryopreserve", "APH-1")
    assert scanned.status_code == 201, scanned.json


def test_a_shipment_barcode_moves_every_bag_in_it(world: World) -> None:
    order = world.enroll()
    bags = [world.collect(order["coi"]) for _ in range(3)]
    for bag in bags:
        for action in ("verify_label", "cryopreserve", "pack"):
            assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
    shipment = world.ship([b["din"] for b in bags])
    picked = world.scan("courier", shipment["barcode"], "pickup", "APH-1")
    assert picked.status_code == 201, picked.json
    assert len(picked.json["events"]) == 3
    assert {e["to_state"] for e in picked.json["events"]} == {"in_transit"}
    assert picked.json["din"] is None
    sequences = [e["sequence"] for e in picked.json["events"]]
    assert sequences == sorted(sequences)
    delivered = world.scan("courier", shipment["barcode"], "deliver", "MFG-1")
    assert delivered.status_code == 201, delivered.json
    assert world.get("op", f"/api/v1/shipments/{shipment['id']}").json["state"] == "delivered"
    # receipt is bag by bag, against the manifest
    for bag in bags:
        received = world.scan(
            "op", bag["barcode"], "receive", "MFG-1", shipment=shipment["barcode"]
        )
        assert received.status_code == 201, received.json
    assert world.get("op", f"/api/v1/shipments/{shipment['id']}").json["state"] == "received"


def test_packing_into_a_named_shipment(world: World) -> None:
    order = world.enroll()
    bag = world.collect(order["coi"])
    for action in ("verify_label", "cryopreserve"):
        assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
    shipment = world.ship([])
    packed = world.scan("aph", bag["barcode"], "pack", "APH-1", shipment=shipment["barcode"])
    assert packed.status_code == 201, packed.json
    assert packed.json["events"][0]["shipment"] == shipment["barcode"]
    assert world.get("aph", f"/api/v1/shipments/{shipment['id']}").json["units"] == [bag["din"]]


def test_a_late_scan_is_kept_and_flagged_for_review(world: World) -> None:
    order = world.enroll()
    bag = world.collect(order["coi"])
    now = dt.datetime.now(dt.UTC)
    first = world.scan("aph", bag["barcode"], "verify_label", "APH-1", occurred_at=now.isoformat())
    assert first.status_code == 201
    assert first.json["needs_review"] is False
    # an offline scanner uploads a scan it says happened an hour before the label check
    late = world.scan(
        "aph",
        bag["barcode"],
        "cryopreserve",
        "APH-1",
        occurred_at=(now - dt.timedelta(hours=1)).isoformat(),
    )
    assert late.status_code == 201, late.json
    assert late.json["needs_review"] is True
    assert "before the bag's previous event" in late.json["events"][0]["review_reason"]
    assert late.json["occurred_at"] < late.json["recorded_at"]


def test_each_collection_gets_a_new_din_on_the_same_coi(world: World) -> None:
    order = world.enroll()
    dins = [world.collect(order["coi"])["din"] for _ in range(5)]
    assert len(set(dins)) == 5
    assert [int(d[-6:]) for d in dins] == sorted(int(d[-6:]) for d in dins)
    full = world.get("aph", f"/api/v1/orders/{order['coi']}").json
    assert {u["din"] for u in full["units"]} == set(dins)
