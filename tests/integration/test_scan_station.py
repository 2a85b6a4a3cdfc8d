"""The scan station knows what comes next: after a bag's first scan, the likely action for its
state and the user's role (a courier's, with the site: the shipment's origin or destination);
nothing is recorded until the person confirms; only the user's own sites are offered. And the
small mends around it: words for a text that is no code, a warning for a patient enrolled
twice, a confirmation before a receipt closes with bags missing."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.test_vein_to_vein import bc, released_batch, ship_back
from tests.world import World, csrf_token


def _next(browser: Any, barcode: str) -> Any:
    return browser.get("/scan/next", query_string={"barcode": barcode})


def _scan(browser: Any, **form: str) -> Any:
    return browser.post(
        "/scan",
        data={**form, "csrf_token": csrf_token(browser, "/scan")},
        headers={"Accept": "application/json"},
    )


def test_the_likely_action_for_each_bag_and_role(world: World) -> None:
    aph = world.browser("aph")
    bag = world.bag_at("collected", "PAT-NEXT")
    assert _next(aph, bag["label_2d"]).json["action"] == "verify_label"
    assert world.verify_label("aph", bag).status_code == 201
    found = _next(aph, bag["barcode"]).json
    assert (found["action"], found["site"], found["state"]) == (
        "cryopreserve",
        "APH-1",
        "label_verified",
    )
    assert "quarantine" in found["actions"]  # the exceptions come after the step forward
    assert found["actions"][0] == "cryopreserve"
    # the courier: the shipment's label, at its origin, then at its destination
    packed = world.bag_at("pack", "PAT-VAN")
    shipment = world.ship([packed["din"]])
    van = world.browser("courier")
    assert (
        _next(van, shipment["barcode"]).json["action"],
        _next(van, shipment["barcode"]).json["site"],
    ) == ("pickup", "APH-1")
    assert world.scan("courier", shipment["barcode"], "pickup", "APH-1").status_code == 201
    found = _next(van, packed["barcode"]).json
    assert (found["action"], found["site"]) == ("deliver", "MFG-1")
    # the plant, a delivered bag; the ward, a stored product
    assert world.scan("courier", shipment["barcode"], "deliver", "MFG-1").status_code == 201
    assert _next(world.browser("op"), packed["barcode"]).json["action"] == "receive"
    made = released_batch(world, "PAT-WARD")
    (product,) = made["batch"]["products"]
    back = ship_back(world, [product["din"]])
    ward = world.browser("care")
    assert _next(ward, bc(product["din"])).json["action"] == "receive"
    world.scan("care", bc(product["din"]), "receive", "TRT-1", shipment=back["barcode"])
    world.scan("care", bc(product["din"]), "store", "TRT-1")
    assert _next(ward, bc(product["din"])).json["action"] == "thaw"
    # nothing for a role that does not scan it; nothing of a bag another network holds
    nothing = _next(world.browser("qa"), bc(product["din"])).json
    assert nothing["action"] is None
    assert "held by TRT-1" in nothing["detail"]
    assert _next(world.browser("aph2"), bag["barcode"]).status_code == 404
    assert _next(aph, "hello world").status_code == 422


def test_a_first_scan_suggests_and_records_nothing(world: World) -> None:
    bag = world.bag_at("verify_label", "PAT-SUGGEST")
    aph = world.browser("aph")
    answer = _scan(aph, barcode=bag["barcode"], action="", site="APH-1")
    assert answer.status_code == 200
    assert (answer.json["code"], answer.json["headline"], answer.json["action"]) == (
        "suggested",
        "NEXT: CRYOPRESERVE",
        "cryopreserve",
    )
    assert world.get("aph", f"/api/v1/units/{bag['din']}").json["state"] == "label_verified"
    # without a script the page answers the same, the action preselected and the bag kept
    page = aph.post(
        "/scan",
        data={
            "barcode": bag["barcode"],
            "action": "",
            "site": "APH-1",
            "csrf_token": csrf_token(aph, "/scan"),
        },
    ).get_data(as_text=True)
    assert '<option value="cryopreserve" selected>' in page
    assert f'value="{bag["barcode"]}"' in page
    recorded = _scan(aph, barcode=bag["barcode"], action="cryopreserve", site="APH-1")
    assert recorded.status_code == 201
    assert world.get("aph", f"/api/v1/units/{bag['din']}").json["state"] == "cryopreserved"


def test_only_the_users_own_sites_are_offered(world: World) -> None:
    page = world.browser("aph").get("/scan").get_data(as_text=True)
    assert '<input type="hidden" id="site" name="site" value="APH-1">' in page
    assert "MFG-1" not in page
    assert "TRT-2" not in page
    packed = world.bag_at("pack", "PAT-ROUTE")
    world.ship([packed["din"]])
    offered = re.findall(
        r'<option value="([A-Z0-9-]+)"[^>]*>\1 \(',
        world.browser("courier").get("/scan").get_data(True),
    )
    assert offered == ["COUR-1", "APH-1", "MFG-1"]  # its own, then its shipment's ends
    assert world.browser("courier2").get("/scan").get_data(as_text=True).count("APH-1") == 0


def test_words_not_a_code_are_refused_plainly(world: World) -> None:
    answer = _scan(world.browser("aph"), barcode="hello world", action="pack", site="APH-1")
    assert answer.json["code"] == "invalid_identifier"
    assert answer.json["detail"].startswith("'hello world' is not a code of ours")
    assert "lower-case" not in answer.json["detail"]
    # a code in the wrong case is still told so
    typed = _scan(
        world.browser("aph"), barcode="=a10012600000189", action="pack", site="APH-1"
    ).json
    assert "lower-case 'a'" in typed["detail"]


def test_a_patient_enrolled_before_is_a_warning_not_a_block(world: World) -> None:
    first = world.enroll("PAT-TWICE")
    care = world.browser("care")
    form = {
        "patient_ref": "pat-twice ",
        "patient_birth_date": "1970-01-01",
        "product": "axi-cel",
        "collection_site": "APH-1",
        "manufacturing_site": "MFG-1",
        "treatment_site": "TRT-1",
    }
    warned = care.post("/orders/new", data={**form, "csrf_token": csrf_token(care, "/orders/new")})
    assert warned.status_code == 200
    page = warned.get_data(as_text=True)
    assert "is enrolled already" in page
    assert first["coi"] in page
    assert "Enrol anyway" in page
    anyway = care.post(
        "/orders/new",
        data={**form, "same_patient": "yes", "csrf_token": csrf_token(care, "/orders/new")},
    )
    assert anyway.status_code == 303
    # the API enrols at once, and says what it noticed
    again = world.enroll("PAT-TWICE")
    assert any(first["coi"] in warning for warning in again["warnings"])
    # another network's order of the same reference is not told
    other = world.post(
        "care2",
        "/api/v1/orders",
        {
            "patient_ref": "PAT-TWICE",
            "product": "axi-cel",
            "collection_site": "APH-2",
            "manufacturing_site": "MFG-2",
            "treatment_site": "TRT-2",
        },
    )
    assert other.status_code == 201
    assert other.json["warnings"] == []


def test_a_receipt_with_bags_missing_closes_only_when_confirmed(world: World) -> None:
    coi = world.enroll("PAT-MISSING")["coi"]
    bags = [world.collect(coi) for _ in range(2)]
    for bag in bags:
        assert world.verify_label("aph", bag).status_code == 201
        for action in ("cryopreserve", "pack"):
            assert world.scan("aph", bag["barcode"], action, "APH-1").status_code == 201
    shipment = world.ship([bag["din"] for bag in bags])
    for action, site in (("pickup", "APH-1"), ("deliver", "MFG-1")):
        assert world.scan("courier", shipment["barcode"], action, site).status_code == 201
    assert world.scan("op", bags[0]["barcode"], "receive", "MFG-1").status_code == 201
    op = world.browser("op")
    path = f"/shipments/{shipment['barcode']}"
    page = op.get(f"{path}/receive").get_data(as_text=True)
    assert "Report 1 bag(s) missing" in page
    assert bags[1]["din"] in page

    def close(**form: str) -> str:
        answer = op.post(
            f"{path}/reconcile", data={**form, "csrf_token": csrf_token(op, f"{path}/receive")}
        )
        return op.get(answer.headers["Location"]).get_data(as_text=True)

    assert "Not closed yet" in close()
    assert "Not closed yet" in close(missing=bags[1]["din"])  # not ticked
    assert "Not closed yet" in close(confirm_missing="yes", missing=bags[0]["din"])  # not those
    assert world.get("op", f"/api/v1/shipments/{shipment['barcode']}").json["missing"] is None
    done = close(confirm_missing="yes", missing=bags[1]["din"])
    assert "1 bag(s) missing, reported" in done
    assert world.get("op", f"/api/v1/shipments/{shipment['barcode']}").json["missing"] == [
        bags[1]["din"]
    ]
