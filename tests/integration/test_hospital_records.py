"""The hospital's records: an order through infusion as a FHIR R5 Bundle (validated by the
fhir.resources models; the patient reference only for the sites that meet the patient), and
patient record merges (HL7 v2 ADT^A40) re-linking an order the bedside then follows."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources import get_fhir_model_class
from fhir.resources.bundle import Bundle

from services.db import UnitOfWork
from services.domain.errors import InvalidRequest
from services.domain.fhir import DIN_SYSTEM, BagFacts, OrderFacts, System, check_codes
from services.domain.fhir import bundle as fhir_bundle
from tests.integration.test_vein_to_vein import _thawed_product, bc
from tests.world import World

BASE = "https://vein2vein.example/id"


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


# a pure mapping of rows any database gives alike: one database (the merge test runs on both)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_infused_order_as_fhir_r5_validates_and_keeps_the_patient_from_manufacturing(
    world: World,
) -> None:
    din = _thawed_product(world, "PAT-FHIR")
    assert world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-FHIR").status_code == 201
    coi = world.get("care", f"/api/v1/units/{din}").json["coi"]

    answer = world.get("care", f"/api/v1/orders/{coi}/fhir")
    assert answer.status_code == 200
    assert answer.mimetype == "application/fhir+json"
    bundle = json.loads(answer.get_data(as_text=True))
    Bundle.model_validate(bundle)  # the structure, by the R5 models
    for entry in bundle["entry"]:  # each resource by its own model too
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])

    products = resources(bundle, "BiologicallyDerivedProduct")
    by_din = {
        next(i["value"] for i in p["identifier"] if i["system"] == DIN_SYSTEM): p for p in products
    }
    full_url = {
        e["resource"]["biologicalSourceEvent"]["value"]: e["fullUrl"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "BiologicallyDerivedProduct"
    }
    product = by_din[din]
    (apheresis_din,) = [d for d in by_din if d != din]
    assert {"system": f"{BASE}/coi", "value": coi} in product["identifier"]
    assert product["parent"] == [{"reference": full_url[apheresis_din]}]
    assert product["processingFacility"][0]["identifier"]["value"] == "MFG-1"
    assert by_din[apheresis_din]["processingFacility"][0]["identifier"]["value"] == "APH-1"
    assert product["productStatus"]["code"] == "unavailable"  # infused
    assert "collectedDateTime" in product["collection"]

    (dispense,) = resources(bundle, "BiologicallyDerivedProductDispense")
    assert dispense["status"] == "issued"
    assert dispense["product"] == {"reference": full_url[din]}
    assert dispense["originRelationshipType"]["coding"][0]["code"] == "autologous"
    assert dispense["patient"]["identifier"]["value"] == "PAT-FHIR"
    assert dispense["location"]["identifier"]["value"] == "TRT-1"
    assert dispense["performer"][0]["actor"]["identifier"]["value"] == "care@example.org"
    assert dispense["preparedDate"] <= dispense["whenHandedOver"]
    (provenance,) = resources(bundle, "Provenance")
    assert provenance["entity"][0]["what"]["reference"].endswith(f"/api/v1/orders/{coi}/audit")
    audit = world.get("care", f"/api/v1/orders/{coi}/audit").json
    assert provenance["entity"][0]["what"]["identifier"]["value"] in json.dumps(audit)
    assert {t["reference"] for t in provenance["target"]} == {
        e["fullUrl"] for e in bundle["entry"] if e["resource"] is not provenance
    }

    # the manufacturing site sees the order's bags and dispense, never the patient
    made = world.get("op", f"/api/v1/orders/{coi}/fhir")
    assert made.status_code == 200
    assert "PAT-FHIR" not in made.get_data(as_text=True)
    (masked,) = resources(
        json.loads(made.get_data(as_text=True)), "BiologicallyDerivedProductDispense"
    )
    assert masked["patient"] == {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "masked",
            }
        ]
    }
    Bundle.model_validate(json.loads(made.get_data(as_text=True)))
    # another network's site: no such order
    assert world.get("care2", f"/api/v1/orders/{coi}/fhir").status_code == 404

    # our own check of the codes: the library takes any code, we do not
    system = System(BASE, audit_url="https://x/audit")
    for path, wrong in (
        (("productStatus", "code"), "frozen"),
        (("productCategory", "code"), "car-t"),
    ):
        broken = copy.deepcopy(bundle)
        target = resources(broken, "BiologicallyDerivedProduct")[0]
        target[path[0]][path[1]] = wrong
        Bundle.model_validate(broken)  # the library accepts it ...
        with pytest.raises(InvalidRequest, match=wrong):
            check_codes(broken, system)  # ... we do not
    # the infusion's record corrected since: the dispense is entered in error
    infusion = next(
        e["sequence"]
        for e in world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
        if e["action"] == "infuse"
    )
    corrected = world.post(
        "admin",
        f"/api/v1/orders/{coi}/corrections",
        {
            "sequence": infusion,
            "reason": "recorded on the wrong patient's chart",
            "signature": {"password": world.password("admin")},
        },
    )
    assert corrected.status_code == 201, corrected.json
    again = json.loads(world.get("care", f"/api/v1/orders/{coi}/fhir").get_data(as_text=True))
    assert resources(again, "BiologicallyDerivedProductDispense")[0]["status"] == "entered-in-error"
    # a product bag not released by QA yet is not available to issue
    moment = dt.datetime.now(dt.UTC)
    bag = BagFacts(din, "product", "produced", moment, "MFG-1", "First Manufacturing")
    awaiting = fhir_bundle(OrderFacts(coi, "axi-cel", [bag], [], "", 0, moment), system)
    assert resources(awaiting, "BiologicallyDerivedProduct")[0]["productStatus"]["code"] == (
        "unavailable"
    )

    broken = copy.deepcopy(bundle)
    resources(broken, "BiologicallyDerivedProductDispense")[0]["status"] = "infused"
    with pytest.raises(InvalidRequest, match="dispense status"):
        check_codes(broken, system)


# a real ADT^A40 shape (HL7 v2.5.1): MSH, EVN, then the surviving patient's PID (its MR among
# other identifiers) and the MRG naming the record merged into it
ADT_A40 = "\r".join(
    [
        "MSH|^~\\&|EPIC|TRT1HOSP|VEIN2VEIN|TRT-1|20261205083000||ADT^A40^ADT_A39|MSG00042|P|2.5.1",
        "EVN|A40|20261205083000|||JSMITH^Smith^John",
        "PID|1||999-99-9999^^^SSA^SS~PAT-NEW^^^TRT1HOSP^MR||DOE^JANE^Q||19800101|F",
        "PD1|||TRT-1 Hospital",
        "MRG|PAT-OLD^^^TRT1HOSP^MR||ACCT-7",
        "",
    ]
)


def test_an_adt_a40_merge_relinks_the_order_and_the_bedside_follows_the_new_wristband(
    world: World,
) -> None:
    din = _thawed_product(world, "PAT-OLD")
    coi = world.get("care", f"/api/v1/units/{din}").json["coi"]
    # another hospital's patient with the same text: its own record, untouched
    elsewhere = world.enroll(
        "PAT-OLD", who="care2", collection="APH-2", manufacturing="MFG-2", treatment="TRT-2"
    )
    hl7_post = {
        "data": ADT_A40.encode(),
        "content_type": "application/hl7-v2",
    }
    # the site's administrators (its integration's account) merge; nobody else, not even a
    # nurse with a token of her own
    for who in ("op", "care"):
        refused = world.client.post(
            "/api/v1/patient-merges/hl7", headers=world.headers(who), **hl7_post
        )
        assert refused.status_code == 403
        assert refused.json["code"] == "forbidden"

    merged = world.client.post(
        "/api/v1/patient-merges/hl7", headers=world.headers("admin"), **hl7_post
    )
    assert merged.status_code == 201, merged.json
    assert merged.json["relinked"] == [{"coi": coi, "old_ref": "PAT-OLD", "new_ref": "PAT-NEW"}]
    assert merged.json["message_control_id"] == "MSG00042"
    again = world.client.post(
        "/api/v1/patient-merges/hl7", headers=world.headers("admin"), **hl7_post
    )
    assert again.status_code == 201
    assert again.json["relinked"] == []  # sent twice: nothing carries the old reference now

    # the event in the chain: who, what; the references themselves never in it
    order = world.get("care", f"/api/v1/orders/{coi}").json
    assert order["coi"] == coi
    assert order["patient_ref"] == "PAT-NEW"
    events = world.get("op", f"/api/v1/orders/{coi}/events")
    (merge_event,) = [e for e in events.json["events"] if e["action"] == "patient_merge"]
    assert merge_event["actor"] == "admin@example.org"
    assert "MSG00042" in merge_event["reason"]
    assert "PAT-OLD" not in events.get_data(as_text=True)
    assert "PAT-NEW" not in events.get_data(as_text=True)
    assert world.get("care", f"/api/v1/orders/{coi}/audit").json["verified"] is True
    epcis = world.get("care", f"/api/v1/orders/{coi}/epcis")
    assert epcis.status_code == 200
    assert world.get("care2", f"/api/v1/orders/{elsewhere['coi']}").json["patient_ref"] == "PAT-OLD"

    # the bedside refuses the old wristband and accepts the new one
    old = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-OLD")
    assert old.status_code == 422
    assert old.json["code"] == "coi_mismatch"
    new = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-NEW")
    assert new.status_code == 201, new.json

    # the surviving reference rewritten behind the chain's back: the audit finds it
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        uow.session.execute(
            sa.text("UPDATE orders SET merged_patient_ref = 'PAT-FORGED' WHERE coi = :coi"),
            {"coi": coi},
        )
        uow.commit()
    audit = world.get("care", f"/api/v1/orders/{coi}/audit").json
    assert audit["verified"] is False
    assert "merged patient reference" in audit["finding"]
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        uow.session.execute(
            sa.text("UPDATE orders SET merged_patient_ref = 'PAT-NEW' WHERE coi = :coi"),
            {"coi": coi},
        )
        uow.commit()
    assert world.get("care", f"/api/v1/orders/{coi}/audit").json["verified"] is True

    # the plain pair, by an administrator of the site; a message that is not a merge refused
    pair = world.post("admin", "/api/v1/patient-merges", {"old_ref": "PAT-NEW", "new_ref": "PAT-Z"})
    assert pair.status_code == 201
    assert [r["coi"] for r in pair.json["relinked"]] == [coi]
    # the same patient enrolled again under the merged reference: warned of this order
    assert any(coi in w for w in world.enroll("PAT-Z")["warnings"])
    # onto another patient's reference (another date of birth recorded): refused, nothing
    # re-linked
    ca = world.enroll("PAT-CA", birth_date="1980-01-01")
    world.enroll("PAT-CB", birth_date="1990-05-05")
    onto = world.post("admin", "/api/v1/patient-merges", {"old_ref": "PAT-CA", "new_ref": "PAT-CB"})
    assert onto.status_code == 409, onto.json
    assert "not the same patient" in onto.json["detail"]
    assert world.get("care", f"/api/v1/orders/{ca['coi']}").json["patient_ref"] == "PAT-CA"
    not_a40 = world.client.post(
        "/api/v1/patient-merges/hl7",
        headers=world.headers("admin"),
        data=ADT_A40.replace("ADT^A40^ADT_A39", "ADT^A08^ADT_A01").encode(),
        content_type="application/hl7-v2",
    )
    assert not_a40.status_code == 422
    assert "ADT^A08" in not_a40.json["detail"]
    no_event = world.client.post(
        "/api/v1/patient-merges/hl7",
        headers=world.headers("admin"),
        data=ADT_A40.replace("ADT^A40^ADT_A39", "ADT").encode(),
        content_type="application/hl7-v2",
    )
    assert no_event.status_code == 422
    assert "names no trigger event" in no_event.json["detail"]
