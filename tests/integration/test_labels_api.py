"""Labels through the API: every format, a sheet per order, and scanning what was printed."""

from __future__ import annotations

import io

import pypdfium2
import pytest
import zxingcpp
from PIL import Image

from services.domain.identifiers import Coi, Din, label_payload
from tests.world import World


def read(image: Image.Image) -> dict[str, str]:
    return {str(r.format): r.text for r in zxingcpp.read_barcodes(image)}


def test_a_printed_label_scans_back_into_the_custody_record(world: World) -> None:
    order = world.enroll()
    unit = world.collect(order["coi"])
    response = world.get("aph", f"/api/v1/units/{unit['din']}/label?format=png&dpi=300")
    assert response.status_code == 200
    assert response.content_type == "image/png"
    assert f"label-{unit['din']}.png" in response.headers["Content-Disposition"]
    codes = read(Image.open(io.BytesIO(response.data)))
    din, coi = Din.from_value(unit["din"]), Coi.from_value(order["coi"])
    assert codes == {"Code 128": din.barcode, "QR Code": label_payload(din, coi)}
    # the label check at the bedside of the apheresis machine scans the 2-D code
    verified = world.scan("aph", codes["QR Code"], "verify_label", "APH-1")
    assert verified.status_code == 201, verified.json
    # and the linear code works for the next step
    frozen = world.scan("aph", codes["Code 128"], "cryopreserve", "APH-1")
    assert frozen.status_code == 201, frozen.json


@pytest.mark.parametrize(
    ("fmt", "media_type", "starts"),
    [
        ("png", "image/png", b"\x89PNG"),
        ("svg", "image/svg+xml", b"<?xml"),
        ("pdf", "application/pdf", b"%PDF"),
        ("zpl", "application/x-zpl", b"^XA"),
    ],
)
def test_every_format(world: World, fmt: str, media_type: str, starts: bytes) -> None:
    unit = world.bag_at("collected")
    response = world.get("aph", f"/api/v1/units/{unit['din']}/label?format={fmt}&size=100x100mm")
    assert response.status_code == 200
    assert response.content_type.startswith(media_type)
    assert response.data.startswith(starts)


def test_an_orders_labels_come_as_one_pdf(world: World) -> None:
    order = world.enroll()
    units = [world.collect(order["coi"]) for _ in range(3)]
    response = world.get("aph", f"/api/v1/orders/{order['coi']}/labels?sheet=letter")
    assert response.status_code == 200
    assert response.content_type == "application/pdf"
    (page,) = [p.render(scale=203 / 72).to_pil() for p in pypdfium2.PdfDocument(response.data)]
    found = sorted(r.text for r in zxingcpp.read_barcodes(page))
    assert found == sorted(
        [u["barcode"] for u in units] + [f"{u['barcode']}&/{order['coi']}" for u in units]
    )
    per_page = world.get("aph", f"/api/v1/orders/{order['coi']}/labels")
    assert len(pypdfium2.PdfDocument(per_page.data)) == 3


def test_label_requests_that_cannot_be_served(world: World) -> None:
    unit = world.bag_at("collected")
    cases = [
        ("aph", f"/api/v1/units/{unit['din']}/label?format=gif", 422, "validation_error"),
        ("aph", f"/api/v1/units/{unit['din']}/label?size=3x3in", 422, "validation_error"),
        ("aph", f"/api/v1/units/{unit['din']}/label?dpi=72", 422, "validation_error"),
        ("aph", f"/api/v1/units/{unit['din']}/label?format=zpl&dpi=250", 422, "invalid_label"),
        ("aph", "/api/v1/units/a100126000001/label", 422, "invalid_identifier"),
        ("aph2", f"/api/v1/units/{unit['din']}/label", 404, "not_found"),
        ("op2", f"/api/v1/orders/{unit['coi']}/labels", 404, "not_found"),
    ]
    for who, path, status, code in cases:
        response = world.get(who, path)
        assert (response.status_code, response.json["code"]) == (status, code), path
    empty = world.enroll("PAT-EMPTY")
    response = world.get("care", f"/api/v1/orders/{empty['coi']}/labels")
    assert (response.status_code, response.json["code"]) == (422, "invalid_label")
