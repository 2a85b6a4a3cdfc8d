"""The whole loop through the API: enrollment, collection, the outbound leg, a batch with its
steps, product bags, QA release, the return leg with reconciliation, storage, thaw and the
bedside check, and every refusal on the way."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.domain.identifiers import Din
from tests.world import World


def bc(din: str) -> str:
    """What a scanner reads off the bag's label."""
    return Din.from_value(din).barcode


STEPS = ["transduction", "expansion", "harvest", "formulation"]


def status(world: World, who: str, batch: str, value: str, **extra: Any) -> Any:
    """A batch's next status; a release carries QA's signature in the act unless ``extra``
    says otherwise."""
    if value == "released":
        extra.setdefault("signature", world.signature(who))
    body = {"status": value, **{k: v for k, v in extra.items() if v is not None}}
    return world.post(who, f"/api/v1/batches/{batch}/status", body)


def released_batch(world: World, patient_ref: str = "PAT-LOOP", products: int = 1) -> Any:
    """An order whose batch is released with ``products`` product bags."""
    bag = world.bag_at("receive", patient_ref)
    opened = world.post("op", "/api/v1/batches", {"coi": bag["coi"]})
    assert opened.status_code == 201, opened.json
    code = opened.json["code"]
    for step in STEPS:
        assert status(world, "op", code, step).status_code == 200
    filled = world.post("op", f"/api/v1/batches/{code}/products", {"count": products})
    assert filled.status_code == 201, filled.json
    for step in ("cryopreservation", "qc_testing"):
        assert status(world, "op", code, step).status_code == 200
    release = status(world, "qa", code, "released")
    assert release.status_code == 200, release.json
    return {"bag": bag, "batch": release.json}


def ship_back(world: World, dins: list[str]) -> dict[str, Any]:
    """Pack the products, ship them to the treatment site, deliver them there."""
    for din in dins:
        assert world.scan("op", bc(din), "pack", "MFG-1").status_code == 201
    shipment = world.ship(dins, origin="MFG-1", destination="TRT-1", who="op")
    assert world.scan("courier", shipment["barcode"], "pickup", "MFG-1").status_code == 201
    assert world.scan("courier", shipment["barcode"], "deliver", "TRT-1").status_code == 201
    return shipment


def test_one_order_from_enrollment_to_infusion(world: World) -> None:
    made = released_batch(world)
    bag, batch = made["bag"], made["batch"]
    coi = bag["coi"]
    assert batch["state"] == "released"
    assert batch["inputs"] == [bag["din"]]
    (product,) = batch["products"]
    din = product["din"]
    assert product["kind"] == "product"
    assert product["coi"] == coi
    assert product["state"] == "released"
    assert product["made_from"] == [bag["din"]]
    assert product["batch"] == batch["code"]
    assert [step["status"] for step in batch["history"]] == [
        "activation",
        *STEPS,
        "cryopreservation",
        "qc_testing",
        "released",
    ]
    apheresis = world.get("care", f"/api/v1/units/{bag['din']}").json
    assert apheresis["state"] == "in_manufacturing"
    assert apheresis["products"] == [din]
    assert apheresis["batch"] == batch["code"]

    # the product's own label, readable like the apheresis bag's
    label = world.get("op", f"/api/v1/units/{din}/label?format=zpl")
    assert label.status_code == 200
    assert din[:5] in label.get_data(as_text=True)

    shipment = ship_back(world, [din])
    received = world.scan("care", bc(din), "receive", "TRT-1", shipment=shipment["barcode"])
    assert received.status_code == 201, received.json
    reconciled = world.post("care", f"/api/v1/shipments/{shipment['barcode']}/reconcile", {})
    assert reconciled.status_code == 200, reconciled.json
    assert reconciled.json["missing"] == []
    assert reconciled.json["received"] == [din]
    assert world.scan("care", bc(din), "store", "TRT-1").status_code == 201
    assert world.scan("care", bc(din), "thaw", "TRT-1").status_code == 201
    infused = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-LOOP")
    assert infused.status_code == 201, infused.json
    assert infused.json["to_state"] == "infused"

    order = world.get("care", f"/api/v1/orders/{coi}").json
    assert order["state"] == "completed"
    assert order["turnaround"]["vein_to_vein_days"] is not None
    assert order["turnaround"]["infused_at"] is not None
    assert [b["code"] for b in order["batches"]] == [batch["code"]]
    timeline = world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
    assert [e["sequence"] for e in timeline] == list(range(len(timeline)))  # 0: the enrolment
    assert timeline[0]["action"] == "enroll"
    actions = [(e["action"], e["din"] == din, e["batch_status"]) for e in timeline]
    assert ("collect", False, None) in actions
    assert ("batch_status", False, "activation") in actions
    assert ("produce", True, None) in actions
    assert ("release", True, None) in actions
    assert ("receive", True, None) in actions
    assert actions[-1] == ("infuse", True, None)
    # the care team was told of every batch step
    feed = world.get("care", "/api/v1/notifications?limit=500").json
    kinds = {item["kind"] for item in feed["items"]}
    assert {"batch_status", "produce", "release", "infuse"} <= kinds

    # the loop is closed: a new collection on it is refused
    again = world.post("aph", f"/api/v1/orders/{coi}/collections", {})
    assert again.status_code == 409


def test_the_order_closes_when_its_last_product_is_infused(world: World) -> None:
    made = released_batch(world, "PAT-TWO", products=2)
    first, second = (p["din"] for p in made["batch"]["products"])
    shipment = ship_back(world, [first, second])
    for din in (first, second):
        world.scan("care", bc(din), "receive", "TRT-1", shipment=shipment["barcode"])
        world.scan("care", bc(din), "store", "TRT-1")
        world.scan("care", bc(din), "thaw", "TRT-1")
    assert (
        world.scan("care", bc(first), "infuse", "TRT-1", patient_ref="PAT-TWO").status_code == 201
    )
    coi = made["bag"]["coi"]
    assert world.get("care", f"/api/v1/orders/{coi}").json["state"] == "in_progress"
    assert (
        world.scan("care", bc(second), "infuse", "TRT-1", patient_ref="PAT-TWO").status_code == 201
    )
    assert world.get("care", f"/api/v1/orders/{coi}").json["state"] == "completed"


def _thawed_product(world: World, patient_ref: str, **thaw: Any) -> str:
    made = released_batch(world, patient_ref)
    (product,) = made["batch"]["products"]
    din = product["din"]
    shipment = ship_back(world, [din])
    world.scan("care", bc(din), "receive", "TRT-1", shipment=shipment["barcode"])
    world.scan("care", bc(din), "store", "TRT-1")
    assert world.scan("care", bc(din), "thaw", "TRT-1", **thaw).status_code == 201
    return din


def test_the_bedside_check_refuses_another_patient_and_keeps_the_refusal(world: World) -> None:
    din = _thawed_product(world, "PAT-ANNA")
    refused = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-BERT")
    assert refused.status_code == 422
    assert refused.json["code"] == "coi_mismatch"
    assert "DO NOT INFUSE" in refused.json["detail"]
    assert "PAT-ANNA" not in refused.json["detail"]
    unit = world.get("care", f"/api/v1/units/{din}").json
    assert unit["state"] == "thawed"
    order = world.get("care", f"/api/v1/orders/{unit['coi']}").json
    (refusal,) = [r for r in order["refusals"] if r["action"] == "infuse"]
    assert refusal["code"] == "coi_mismatch"

    missing = world.scan("care", bc(din), "infuse", "TRT-1")
    assert missing.status_code == 422
    assert missing.json["code"] == "invalid_request"


def test_a_product_of_another_order_is_refused_at_the_bedside(world: World) -> None:
    din = _thawed_product(world, "PAT-CARL")
    other = world.enroll("PAT-DORA")
    # the nurse works on Dora's order and scans Carl's bag: refused whatever patient is typed
    refused = world.scan(
        "care", bc(din), "infuse", "TRT-1", patient_ref="PAT-DORA", coi=other["coi"]
    )
    assert refused.status_code == 422
    assert refused.json["code"] == "coi_mismatch"
    refused = world.scan(
        "care", bc(din), "infuse", "TRT-1", patient_ref="PAT-CARL", coi=other["coi"]
    )
    assert refused.status_code == 422
    assert refused.json["code"] == "coi_mismatch"


def test_a_thaw_older_than_the_products_limit_is_refused(world: World) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    din = _thawed_product(world, "PAT-ERIN", occurred_at=long_ago.isoformat())
    refused = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-ERIN")
    assert refused.status_code == 422
    assert refused.json["code"] == "thaw_expired"


def test_batch_refusals_out_of_sequence_wrong_role_wrong_site(world: World) -> None:
    bag = world.bag_at("receive", "PAT-SEQ")
    assert world.post("care", "/api/v1/batches", {"coi": bag["coi"]}).status_code == 403
    assert world.post("op2", "/api/v1/batches", {"coi": bag["coi"]}).status_code == 404
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    again = world.post("op", "/api/v1/batches", {"coi": bag["coi"]})
    assert again.status_code == 409
    assert again.json["code"] == "conflict"

    skipped = status(world, "op", code, "expansion")
    assert skipped.status_code == 409
    assert skipped.json["code"] == "illegal_transition"
    assert status(world, "care", code, "transduction").status_code == 403
    assert status(world, "op2", code, "transduction").status_code == 404
    early = status(world, "qa", code, "released")
    assert early.status_code == 409
    assert world.post("op", f"/api/v1/batches/{code}/products", {"count": 1}).status_code == 409
    assert status(world, "op", code, "transduction").status_code == 200
    no_reason = status(world, "qa", code, "failed")
    assert no_reason.status_code == 422
    assert no_reason.json["code"] == "invalid_request"
    for step in STEPS[1:]:
        assert status(world, "op", code, step).status_code == 200
    world.post("op", f"/api/v1/batches/{code}/products", {"count": 1})
    for step in ("cryopreservation", "qc_testing"):
        assert status(world, "op", code, step).status_code == 200
    assert status(world, "op", code, "released").status_code == 403  # QA releases
    # a product is released with its batch, never by a bag's own scan
    product = world.get("op", f"/api/v1/batches/{code}").json["products"][0]["din"]
    assert world.scan("qa", bc(product), "release", "MFG-1").status_code == 409


def test_a_failed_batch_rejects_its_products_and_a_new_collection_follows(world: World) -> None:
    bag = world.bag_at("receive", "PAT-FAIL")
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    for step in STEPS:
        status(world, "op", code, step)
    world.post("op", f"/api/v1/batches/{code}/products", {"count": 2})
    failed = status(world, "qa", code, "failed", reason="sterility test positive")
    assert failed.status_code == 200, failed.json
    assert failed.json["state"] == "failed"
    assert failed.json["failure_reason"] == "sterility test positive"
    assert {p["state"] for p in failed.json["products"]} == {"rejected"}
    assert status(world, "op", code, "cryopreservation").status_code == 409

    feed = world.get("care", "/api/v1/notifications?limit=500").json["items"]
    assert any("FAILED" in item["summary"] and "sterility" in item["summary"] for item in feed)
    again = world.collect(bag["coi"])
    assert again["coi"] == bag["coi"]
    assert again["din"] != bag["din"]


def test_reconciliation_reports_missing_and_unexpected_bags(world: World) -> None:
    made = released_batch(world, "PAT-REC", products=2)
    first, second = (p["din"] for p in made["batch"]["products"])
    shipment = ship_back(world, [first, second])
    other = released_batch(world, "PAT-OTHER")
    (stray,) = (p["din"] for p in other["batch"]["products"])

    early = world.post("care", f"/api/v1/shipments/{shipment['barcode']}/reconcile", {})
    assert early.status_code == 200  # delivered: the destination may close its check
    assert early.json["missing"] == [first, second]
    again = world.post("care", f"/api/v1/shipments/{shipment['barcode']}/reconcile", {})
    assert again.status_code == 409

    # a bag that is not on this shipment's manifest is refused, not silently accepted
    unexpected = world.scan("care", bc(stray), "receive", "TRT-1", shipment=shipment["barcode"])
    assert unexpected.status_code in (409, 422)
    feed = world.get("care", "/api/v1/notifications?limit=500").json["items"]
    discrepancies = [n for n in feed if n["kind"] == "shipment_discrepancy"]
    assert len(discrepancies) == 1
    assert first in discrepancies[0]["summary"]
    assert second in discrepancies[0]["summary"]


@pytest.mark.parametrize("who", ["courier", "op", "aph"])
def test_only_the_treatment_sites_care_team_stores_thaws_and_infuses(
    world: World, who: str
) -> None:
    made = released_batch(world, f"PAT-{who.upper()}")
    (product,) = made["batch"]["products"]
    din = product["din"]
    shipment = ship_back(world, [din])
    world.scan("care", bc(din), "receive", "TRT-1", shipment=shipment["barcode"])
    refused = world.scan(who, bc(din), "store", "TRT-1")
    assert refused.status_code in (403, 404)
