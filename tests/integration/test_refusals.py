"""Every refusal: problem+json with its stable code, never a 500, and kept as a refused scan."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import CustodyEvent, RefusedScan
from services.domain.identifiers import Coi, Din
from tests.world import World


def checked_label(world: World, bag: dict[str, Any]) -> str:
    """The bag's label, printed, and the text of its 2-D code: what a label check scans."""
    world.label("aph", bag["din"])
    return str(bag["label_2d"])


def refusals(world: World) -> list[RefusedScan]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(RefusedScan).order_by(RefusedScan.id)).all())


def event_count(world: World) -> int:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return len(uow.session.exec(select(CustodyEvent)).all())


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = response.json
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith(code)
    assert body["title"]
    assert body["detail"]
    return body


def assert_refused(world: World, response: Any, status: int, code: str) -> RefusedScan:
    before = event_count(world)
    assert_problem(response, status, code)
    assert event_count(world) == before
    stored = refusals(world)[-1]
    assert stored.code == code
    return stored


def test_bag_of_another_patient_at_the_wrong_site_is_refused_and_recorded(world: World) -> None:
    # patient B's bag travels to MFG-2; MFG-1 is expecting patient A's bag
    world.bag_at("deliver", "PAT-A")
    bag_b = world.bag_at("collected", "PAT-B", manufacturing="MFG-2")
    order_a = world.get(
        "op", "/api/v1/orders/" + world.get("aph", "/api/v1/units/" + bag_b["din"]).json["coi"]
    )
    assert order_a.status_code == 404  # MFG-1 cannot even see B's order
    for action in ("verify_label", "cryopreserve", "pack"):
        assert world.scan("aph", bag_b["barcode"], action, "APH-1").status_code == 201
    world.ship([bag_b["din"]], destination="MFG-2")
    assert world.scan("courier", bag_b["barcode"], "pickup", "APH-1").status_code == 201
    # the courier tries to hand B's bag over at MFG-1
    response = world.scan("courier", bag_b["barcode"], "deliver", "MFG-1")
    stored = assert_refused(world, response, 422, "wrong_site")
    assert stored.site_code == "MFG-1"
    assert stored.unit_id is not None
    assert stored.order_id is not None
    assert stored.barcode == bag_b["barcode"]
    assert "MFG-2" in stored.detail
    # QA sees it on the order
    order = world.get("aph", f"/api/v1/orders/{bag_b['coi']}").json
    (refusal,) = order["refusals"]
    assert refusal["code"] == "wrong_site"
    assert refusal["site"] == "MFG-1"
    assert refusal["actor"] == "courier@example.org"
    assert refusal["barcode"] == bag_b["barcode"]


def test_receiving_a_bag_for_another_manufacturing_site_is_wrong_site(world: World) -> None:
    bag = world.bag_at("deliver", manufacturing="MFG-1")
    response = world.scan("op2", bag["barcode"], "receive", "MFG-2")
    # MFG-2 may not see the bag at all: to MFG-2 it does not exist
    assert_refused(world, response, 404, "not_found")


def test_label_of_another_chain_of_identity_is_coi_mismatch(world: World) -> None:
    order_a = world.enroll("PAT-A")
    order_b = world.enroll("PAT-B")
    bag_a = world.collect(order_a["coi"])
    # bag A carries a label printed with patient B's chain of identity
    wrong_label = Din.from_value(bag_a["din"]).barcode + Coi.from_value(order_b["coi"]).barcode
    response = world.scan("aph", wrong_label, "verify_label", "APH-1")
    stored = assert_refused(world, response, 422, "coi_mismatch")
    assert order_a["coi"] in stored.detail


def test_bag_scanned_against_another_order_is_coi_mismatch(world: World) -> None:
    order_a = world.enroll("PAT-A")
    order_b = world.enroll("PAT-B")
    bag_a = world.collect(order_a["coi"])
    response = world.scan("aph", bag_a["barcode"], "verify_label", "APH-1", coi=order_b["coi"])
    assert_refused(world, response, 422, "coi_mismatch")


def test_out_of_sequence_scan_is_illegal_transition(world: World) -> None:
    bag = world.bag_at("collected")
    response = world.scan("aph", bag["barcode"], "pack", "APH-1")
    body = assert_problem(response, 409, "illegal_transition")
    assert "collected" in body["detail"]
    assert refusals(world)[-1].code == "illegal_transition"


def test_wrong_role_is_forbidden(world: World) -> None:
    bag = world.bag_at("collected")
    # the care team of the treatment site can see the order but cannot verify labels
    response = world.scan("care", bag["barcode"], "verify_label", "APH-1")
    assert_refused(world, response, 403, "forbidden")


def test_scanning_for_another_site_is_forbidden(world: World) -> None:
    bag = world.bag_at("collected")
    other = world.bag_at("collected", "PAT-2", collection="APH-2")
    response = world.scan("aph", other["barcode"], "verify_label", "APH-2")
    assert_refused(world, response, 404, "not_found")  # APH-1 cannot see APH-2's bags
    response = world.scan("aph", bag["barcode"], "verify_label", "APH-2")
    assert_refused(world, response, 403, "forbidden")


def test_unknown_din_is_not_found(world: World) -> None:
    din = Din.generate(fin="A1001", year=26, sequence=999_999)
    response = world.scan("aph", din.barcode, "verify_label", "APH-1")
    stored = assert_refused(world, response, 404, "not_found")
    assert stored.unit_id is None


@pytest.mark.parametrize(
    "barcode",
    ["=A10012600000171", "a1001 26 000001 x", "A100126000001", "hello", "SHP-12"],
)
def test_unreadable_barcodes_are_invalid_identifier(world: World, barcode: str) -> None:
    world.bag_at("collected")
    response = world.scan("aph", barcode, "verify_label", "APH-1")
    stored = assert_refused(world, response, 422, "invalid_identifier")
    assert stored.barcode == barcode


def test_wrong_check_character_is_refused(world: World) -> None:
    bag = world.bag_at("collected")
    din = Din.from_value(bag["din"])
    wrong = next(c for c in "ABC" if c != din.check_character)
    response = world.scan("aph", f"{din.eye_readable} {wrong}", "verify_label", "APH-1")
    assert_refused(world, response, 422, "invalid_identifier")


def test_pickup_of_a_bag_not_in_a_shipment_is_refused(world: World) -> None:
    bag = world.bag_at("pack")
    response = world.scan("courier", bag["barcode"], "pickup", "APH-1")
    # no shipment names a courier for it: to a courier, the bag is not there to be seen
    assert_refused(world, response, 404, "not_found")


def test_pickup_against_another_shipment_is_not_in_shipment(world: World) -> None:
    bag = world.bag_at("pack")
    other = world.bag_at("pack", "PAT-2")
    world.ship([bag["din"]])
    second = world.ship([other["din"]])
    response = world.scan("courier", bag["barcode"], "pickup", "APH-1", shipment=second["barcode"])
    assert_refused(world, response, 422, "not_in_shipment")


def test_a_shipment_without_a_named_courier_is_claimed_at_pickup(world: World) -> None:
    bag = world.bag_at("pack")
    shipment = world.ship([bag["din"]], carrier=None)
    assert shipment["carrier"] is None
    # only a courier APH-1 has contracted sees it (COUR-1), and claims it by picking it up
    response = world.scan("courier2", shipment["barcode"], "pickup", "APH-1")
    assert_refused(world, response, 404, "not_found")
    response = world.scan("courier", shipment["barcode"], "pickup", "APH-1")
    assert response.status_code == 201, response.json
    claimed = world.get("aph", f"/api/v1/shipments/{shipment['id']}").json
    assert claimed["carrier"] == "COUR-1"
    # from now on only the courier holding it can deliver it
    response = world.scan("courier2", bag["barcode"], "deliver", "MFG-1")
    assert_refused(world, response, 404, "not_found")
    assert world.scan("courier", bag["barcode"], "deliver", "MFG-1").status_code == 201


def test_receipt_against_the_wrong_manifest_is_not_in_shipment(world: World) -> None:
    bag = world.bag_at("deliver")
    response = world.scan("op", bag["barcode"], "receive", "MFG-1", shipment="SHP-00000999")
    assert_refused(world, response, 404, "not_found")
    other = world.bag_at("pack", "PAT-2")
    shipment = world.ship([other["din"]])
    response = world.scan("op", bag["barcode"], "receive", "MFG-1", shipment=shipment["barcode"])
    assert_refused(world, response, 422, "not_in_shipment")


def test_pickup_by_a_courier_the_shipment_does_not_name_is_forbidden(world: World) -> None:
    bag = world.bag_at("pack")
    world.ship([bag["din"]], carrier="COUR-1")
    response = world.scan("courier2", bag["barcode"], "pickup", "APH-1")
    assert_refused(world, response, 404, "not_found")  # COUR-2 has no business with the bag


def test_shipment_to_a_site_the_order_does_not_name_is_refused(world: World) -> None:
    bag = world.bag_at("pack")
    response = world.post(
        "aph",
        "/api/v1/shipments",
        {"origin": "APH-1", "destination": "MFG-2", "shipper_id": "LN2-1", "units": [bag["din"]]},
    )
    assert_problem(response, 422, "wrong_site")


def test_shipment_of_an_unpacked_bag_is_refused(world: World) -> None:
    bag = world.bag_at("collected")
    response = world.post(
        "aph",
        "/api/v1/shipments",
        {"origin": "APH-1", "destination": "MFG-1", "shipper_id": "LN2-1", "units": [bag["din"]]},
    )
    assert_problem(response, 409, "illegal_transition")


def test_a_scan_from_the_future_is_refused(world: World) -> None:
    bag = world.bag_at("collected")
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    response = world.scan(
        "aph", bag["barcode"], "verify_label", "APH-1", occurred_at=future.isoformat()
    )
    body = assert_refused(world, response, 422, "invalid_request")
    assert "scanner's clock" in body.detail


def test_a_scan_at_an_unknown_site_is_refused(world: World) -> None:
    bag = world.bag_at("collected")
    response = world.scan("aph", bag["barcode"], "verify_label", "NOWHERE")
    stored = assert_refused(world, response, 404, "not_found")
    assert stored.site_code == "NOWHERE"
    assert stored.site_id is None


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"barcode": "x", "action": "teleport", "site": "APH-1"}, "action"),
        ({"action": "pack", "site": "APH-1"}, "barcode"),
        ({"barcode": "x", "action": "pack", "site": "APH-1", "event_id": "not-a-uuid"}, "event_id"),
        (
            {"barcode": "x", "action": "pack", "site": "APH-1", "occurred_at": "2026-01-01T10:00"},
            "occurred_at",
        ),
    ],
)
def test_malformed_scan_bodies_are_validation_errors(
    world: World, body: dict[str, Any], where: str
) -> None:
    response = world.post("aph", "/api/v1/scans", body)
    problem = assert_problem(response, 422, "validation_error")
    assert where in problem["detail"]


def test_not_json_at_all_is_a_problem_not_a_500(world: World) -> None:
    response = world.client.post(
        "/api/v1/scans",
        data="{{{",
        headers={**world.headers("aph"), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.content_type == "application/problem+json"


def test_unknown_route_and_method_are_problems(world: World) -> None:
    assert_problem(world.get("aph", "/api/v1/nothing"), 404, "not_found")
    response = world.client.delete("/api/v1/scans", headers=world.headers("aph"))
    assert response.status_code == 405
    assert response.content_type == "application/problem+json"


def test_no_token_or_a_bad_token_is_unauthorized(world: World) -> None:
    response = world.client.get("/api/v1/identifiers?text=x")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = world.client.get(
        "/api/v1/identifiers?text=x", headers={"Authorization": "Bearer v2v_nope"}
    )
    assert_problem(response, 401, "unauthorized")


def test_identifiers_endpoint(world: World) -> None:
    ok = world.get("aph", "/api/v1/identifiers?text=%3DG12341765432170")
    assert ok.status_code == 200
    assert ok.json["kind"] == "din"
    assert ok.json["value"] == "G123417654321"
    assert ok.json["check_character"] == "A"
    assert ok.json["eye_readable"] == "G1234 17 654321"
    assert ok.json["flags"] == {"value": "70", "kind": "checksum"}
    keyed = world.get("aph", "/api/v1/identifiers?text=G1234%2017%20654321%20A")
    assert keyed.json["value"] == "G123417654321"
    assert keyed.json["form"] == "keyboard"
    coi = world.get("aph", "/api/v1/identifiers?text=%26%2FCHA999926AB12CD")
    assert coi.json["kind"] == "coi"
    assert coi.json["flags"] is None
    bad = world.get("aph", "/api/v1/identifiers?text=g123417654321A")
    assert_problem(bad, 422, "invalid_identifier")
    assert "lower-case" in bad.json["detail"]


def test_enrolling_with_sites_of_the_wrong_kind_is_refused(world: World) -> None:
    def order(**sites: str) -> dict[str, str]:
        return {
            "patient_ref": "P",
            "product": "axi-cel",
            "collection_site": "APH-1",
            "manufacturing_site": "MFG-1",
            "treatment_site": "TRT-1",
            **sites,
        }

    response = world.post("care", "/api/v1/orders", order(collection_site="MFG-1"))
    assert_problem(response, 422, "wrong_site")
    assert_problem(world.post("courier", "/api/v1/orders", order()), 403, "forbidden")
    assert_problem(world.post("care2", "/api/v1/orders", order()), 403, "forbidden")


def test_only_the_collection_site_registers_collections(world: World) -> None:
    order = world.enroll()
    assert_problem(
        world.post("care", f"/api/v1/orders/{order['coi']}/collections", {}), 403, "forbidden"
    )
    assert_problem(
        world.post("aph2", f"/api/v1/orders/{order['coi']}/collections", {}), 404, "not_found"
    )
    assert_problem(
        world.post("aph", "/api/v1/orders/CHA100126ZZZZZZ/collections", {}), 404, "not_found"
    )
    assert_problem(
        world.post("aph", "/api/v1/orders/chnope/collections", {}), 422, "invalid_identifier"
    )


def test_event_id_reused_for_a_different_scan_is_refused(world: World) -> None:
    bag = world.bag_at("collected")
    event_id = str(uuid.uuid4())
    first = world.post(
        "aph",
        "/api/v1/scans",
        {
            "barcode": checked_label(world, bag),
            "action": "verify_label",
            "site": "APH-1",
            "event_id": event_id,
        },
    )
    assert first.status_code == 201
    other = world.post(
        "aph",
        "/api/v1/scans",
        {
            "barcode": bag["barcode"],
            "action": "cryopreserve",
            "site": "APH-1",
            "event_id": event_id,
        },
    )
    assert_refused(world, other, 422, "event_id_reused")
