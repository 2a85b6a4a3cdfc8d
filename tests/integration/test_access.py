"""Site scoping and the patient reference: who sees what."""

from __future__ import annotations

from tests.world import World


def test_another_sites_order_is_not_found(world: World) -> None:
    order = world.enroll()
    for who in ("aph2", "op2", "care2", "courier"):
        response = world.get(who, f"/api/v1/orders/{order['coi']}")
        assert response.status_code == 404, who
        assert response.json["code"] == "not_found"
    missing = world.get("care", "/api/v1/orders/CHA100126ZZZZZZ")
    assert (
        missing.json["detail"].replace("CHA100126ZZZZZZ", order["coi"])
        == world.get("care2", f"/api/v1/orders/{order['coi']}").json["detail"]
    )


def test_patient_reference_only_for_collection_and_treatment(world: World) -> None:
    bag = world.bag_at("pickup", "PAT-SECRET")
    coi = world.get("aph", f"/api/v1/units/{bag['din']}").json["coi"]
    assert world.get("care", f"/api/v1/orders/{coi}").json["patient_ref"] == "PAT-SECRET"
    assert world.get("aph", f"/api/v1/orders/{coi}").json["patient_ref"] == "PAT-SECRET"
    assert world.get("op", f"/api/v1/orders/{coi}").json["patient_ref"] is None
    courier_view = world.get("courier", f"/api/v1/orders/{coi}")
    assert courier_view.status_code == 200
    assert courier_view.json["patient_ref"] is None
    events = world.get("courier", f"/api/v1/units/{bag['din']}/events").json
    assert "PAT-SECRET" not in str(events)


def test_courier_sees_only_what_it_carries(world: World) -> None:
    carried = world.bag_at("pickup", "PAT-1")
    assert world.get("courier", f"/api/v1/units/{carried['din']}").status_code == 200
    assert world.get("courier2", f"/api/v1/units/{carried['din']}").status_code == 404
