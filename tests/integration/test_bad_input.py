"""Bad input gets a clear error (problem+json with a stable code), never a 500: each case here
was a 500 once, and the OpenAPI document says so for every error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.world import World

CASES = [
    ("GET", "/api/v1/identifiers?text==A999926000001²²", None, 422),
    ("GET", "/api/v1/batches/²", None, 422),
    ("GET", "/api/v1/shipments/¹", None, 422),
    ("POST", "/api/v1/shipments/¹/reconcile", {}, 422),
    ("DELETE", "/api/v1/subscriptions/2109734129118738907136", None, 422),
    ("POST", "/api/v1/notifications/9999999999999/read", None, 422),
    ("DELETE", "/api/v1/tokens/99999999999", None, 422),
    ("GET", "/api/v1/orders/CHÉ1001260000012", None, 422),
    ("GET", "/api/v1/units/A1001\uff12\uff16000001", None, 422),  # full-width digits
    ("GET", "/api/v1/sla-policies/axi\x00cel", None, 422),
    (
        "GET",
        "/api/v1/turnaround?since=0001-01-01T00:00:00%2B14:00&until=2100-01-01T00:00:00Z",
        None,
        422,
    ),
    (
        "POST",
        "/api/v1/scans",
        {
            "barcode": "=A10012600000189",
            "action": "verify_label",
            "site": "APH-1",
            "occurred_at": "0001-01-01T00:00:00+14:00",
        },
        422,
    ),
    (
        "POST",
        "/api/v1/orders",
        {
            "patient_ref": "PAT\x00-1",
            "product": "axi-cel",
            "collection_site": "APH-1",
            "manufacturing_site": "MFG-1",
            "treatment_site": "TRT-1",
        },
        422,
    ),
    (
        "POST",
        "/api/v1/subscriptions",
        {"channel": "webhook", "target": "https://[x/", "site": "TRT-1"},
        422,
    ),
    (
        "POST",
        "/api/v1/shipments",
        {"origin": "APH-1", "destination": "MFG-1", "shipper_id": "LN2\x00", "units": []},
        422,
    ),
    ("POST", "/api/v1/sla-policies/axi-cel", {"limits_hours": {"pickup\x00": 12}}, 422),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"), CASES, ids=[c[1][:60] for c in CASES]
)
def test_bad_input_is_a_problem_never_a_500(
    world: World, method: str, path: str, body: Any, status: int
) -> None:
    who = "admin" if "sla-policies" in path else "care"
    response = world.client.open(path, method=method, json=body, headers=world.headers(who))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert response.json["code"] in ("invalid_identifier", "invalid_request", "validation_error")


def test_every_error_is_documented_as_problem_json(client: Any) -> None:
    document = client.get("/api/v1/openapi.json").json
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("401", "403", "404", "422", "429"):
                assert status in responses, f"{method} {path} does not document {status}"
            for status, response in responses.items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )


def test_a_scans_shipment_is_its_code_or_the_id_post_shipments_answers(world: World) -> None:
    first = world.bag_at("cryopreserve", "PAT-ID-1")
    shipment = world.ship([], origin="APH-1", destination="MFG-1")
    by_id = world.scan("aph", first["barcode"], "pack", "APH-1", shipment=shipment["id"])
    assert by_id.status_code == 201, by_id.json
    assert by_id.json["shipment"] == shipment["barcode"]
    second = world.bag_at("cryopreserve", "PAT-ID-2")
    by_code = world.scan("aph", second["barcode"], "pack", "APH-1", shipment=shipment["barcode"])
    assert by_code.status_code == 201, by_code.json
    manifest = world.get("aph", f"/api/v1/shipments/{shipment['id']}").json["units"]
    assert manifest == [first["din"], second["din"]]
