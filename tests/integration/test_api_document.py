"""The OpenAPI document is generated from the code and covers the contract."""

from __future__ import annotations

from flask.testing import FlaskClient

CONTRACT_PATHS = {
    ("get", "/api/v1/identifiers"),
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders/{coi}"),
    ("post", "/api/v1/orders/{coi}/collections"),
    ("get", "/api/v1/units/{din}"),
    ("get", "/api/v1/units/{din}/events"),
    ("post", "/api/v1/scans"),
    ("post", "/api/v1/shipments"),
}


def test_openapi_document_is_public_and_covers_the_contract(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json
    assert document["openapi"].startswith("3.")
    present = {(method, path) for path, item in document["paths"].items() for method in item}
    assert present >= CONTRACT_PATHS
    scan = document["paths"]["/api/v1/scans"]["post"]
    body = scan["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"barcode", "action", "site"} <= set(schema["required"])
    assert {"200", "201", "409", "422", "403"} <= set(scan["responses"])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
