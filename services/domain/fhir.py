"""An order as FHIR R5, for the hospital's health record: a Bundle (type collection) with a
BiologicallyDerivedProduct for every bag, after infusion a BiologicallyDerivedProductDispense,
and a Provenance pointing to the chain record.

- Every bag: its DIN as an identifier and as the biological source event (ICCBBA's DIN URI),
  the COI as an identifier under our own system, the category ``cells``, its product as text
  (no ICCBBA product code table is copied here), collection time, processing facility (the
  site that collected an apheresis bag, the one that manufactured a product bag), status
  (available while it is on its way; unavailable before its batch's release, once it is
  infused, spent, on hold or gone), expiry, and a product bag's parents: the apheresis bags
  its batch was made from.
- The dispense (status ``issued``: handed over and infused; ``entered-in-error`` when the
  infusion's record was corrected since, to be read with the chain's correction): the
  product, the patient only for those allowed to see the reference (otherwise the reference
  says it is masked, as FHIR's data-absent-reason has it), origin relationship
  ``autologous``, the bedside match, prepared (thawed) and handed-over (infused) times, the
  performer and the ward.
- Pure: the facts come in, a dict goes out; ``check_codes`` refuses a code outside its value
  set (the FHIR library checks the structure, not the codes).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.domain.errors import InvalidRequest

FHIR_JSON = "application/fhir+json"
DIN_SYSTEM = "https://www.isbt128.org/uri/DonationIdentificationNumber"
CATEGORY_SYSTEM = "http://hl7.org/fhir/product-category"
STATUS_SYSTEM = "http://hl7.org/fhir/biologicallyderived-product-status"
DISPENSE_STATUS_SYSTEM = "http://hl7.org/fhir/biologicallyderivedproductdispense-status"
ORIGIN_SYSTEM = "http://hl7.org/fhir/biologicallyderivedproductdispense-origin-relationship"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

# the value sets of the codes we send: system -> codes (FHIR's own, and ours for the bedside
# match, whose binding is an example only)
VALUE_SETS: Mapping[str, frozenset[str]] = {
    CATEGORY_SYSTEM: frozenset({"organ", "tissue", "fluid", "cells", "biologicalAgent"}),
    STATUS_SYSTEM: frozenset({"available", "unavailable"}),
    DISPENSE_STATUS_SYSTEM: frozenset(
        {
            "preparation",
            "in-progress",
            "allocated",
            "issued",
            "unfulfilled",
            "returned",
            "entered-in-error",
            "unknown",
        }
    ),
    ORIGIN_SYSTEM: frozenset({"autologous", "allogeneic"}),
    DATA_ABSENT: frozenset({"masked", "unknown", "not-applicable"}),
    PROVENANCE_ACTIVITY: frozenset({"CREATE", "UPDATE", "DELETE"}),
    AGENT_TYPE: frozenset({"author", "custodian", "performer", "assembler", "verifier"}),
    IDENTIFIER_TYPE: frozenset({"MR"}),
}
KIND_TEXT = {"apheresis": "apheresis collection", "product": "final product"}
MATCH_CODES = frozenset({"matched"})  # the bedside matched the wristband and the bag's COI
UNAVAILABLE_STATES = frozenset(
    {
        "infused",
        "destroyed",
        "lost",
        "rejected",
        "on_hold",
        "quarantined",
        "in_manufacturing",
        "produced",  # not released by QA yet: it may not be issued
    }
)


@dataclass(frozen=True)
class BagFacts:
    din: str
    kind: str  # apheresis | product
    state: str
    collected_at: dt.datetime
    facility: str  # the site code that collected (apheresis) or manufactured (product) it
    facility_name: str
    parents: tuple[str, ...] = ()  # a product bag's apheresis DINs
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class DispenseFacts:
    din: str
    prepared_at: dt.datetime | None  # thawed
    handed_over_at: dt.datetime  # infused, by the bedside clock
    performer_email: str
    performer_name: str
    location: str  # the treatment site's code
    location_name: str
    patient_ref: str | None  # None: the reader may not see it
    corrected: bool = False  # the infusion's record was corrected since


@dataclass(frozen=True)
class OrderFacts:
    coi: str
    product: str
    bags: Sequence[BagFacts]
    dispenses: Sequence[DispenseFacts]
    chain_head: str  # the order's chain head (hash) as it is now
    chain_length: int
    recorded_at: dt.datetime


class System:
    """Our own identifier systems, under EPCIS_BASE_URI."""

    def __init__(self, base: str, audit_url: str) -> None:
        self.base = base.rstrip("/")
        self.audit_url = audit_url

    @property
    def coi(self) -> str:
        return f"{self.base}/coi"

    @property
    def site(self) -> str:
        return f"{self.base}/site"

    @property
    def user(self) -> str:
        return f"{self.base}/user"

    @property
    def patient(self) -> str:
        return f"{self.base}/patient-ref"

    @property
    def chain(self) -> str:
        return f"{self.base}/chain-head"

    @property
    def match(self) -> str:
        return f"{self.base}/fhir/CodeSystem/bedside-match"


def bundle(facts: OrderFacts, system: System) -> dict[str, Any]:
    """The order as a FHIR R5 Bundle (JSON), its codes checked."""
    ids = {bag.din: _uuid(facts.coi, "bag", bag.din) for bag in facts.bags}
    entries = [_entry(ids[bag.din], _product(bag, facts, system, ids)) for bag in facts.bags]
    for dispense in facts.dispenses:
        key = _uuid(facts.coi, "dispense", dispense.din)
        entries.append(_entry(key, _dispense(dispense, system, ids)))
    targets = [{"reference": entry["fullUrl"]} for entry in entries]
    provenance = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": _instant(facts.recorded_at),
        "activity": _concept(PROVENANCE_ACTIVITY, "CREATE"),
        "agent": [
            {
                "type": _concept(AGENT_TYPE, "assembler"),
                "who": {"display": "vein2vein chain of identity and custody"},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "reference": system.audit_url,
                    "identifier": {"system": system.chain, "value": facts.chain_head},
                    "display": f"chain of custody of {facts.coi}, {facts.chain_length} records",
                },
            }
        ],
    }
    entries.append(_entry(_uuid(facts.coi, "provenance", facts.chain_head), provenance))
    document = {
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"system": system.coi, "value": facts.coi},
        "timestamp": _instant(facts.recorded_at),
        "entry": entries,
    }
    check_codes(document, system)
    return document


def check_codes(document: Any, system: System) -> None:
    """Refuse a Coding whose code is outside its system's value set (ours included)."""
    sets = {**VALUE_SETS, system.match: MATCH_CODES}
    for entry in document.get("entry", []):
        resource = entry.get("resource", {})
        dispense = resource.get("resourceType") == "BiologicallyDerivedProductDispense"
        if dispense and resource.get("status") not in VALUE_SETS[DISPENSE_STATUS_SYSTEM]:
            raise InvalidRequest(f"{resource.get('status')!r} is not a dispense status")
    for coding in _codings(document):
        allowed = sets.get(coding.get("system", ""))
        if allowed is None:
            raise InvalidRequest(f"no value set known for the code system {coding.get('system')}")
        if coding.get("code") not in allowed:
            raise InvalidRequest(
                f"{coding.get('code')!r} is not in the value set of {coding.get('system')}"
            )


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "code" in node and "system" in node and isinstance(node.get("code"), str):
            yield node
        for key, value in node.items():
            if key == "extension":
                for extension in value:
                    if extension.get("url") == DATA_ABSENT:
                        yield {"system": DATA_ABSENT, "code": extension.get("valueCode")}
            else:
                yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _codings(item)


def _product(
    bag: BagFacts, facts: OrderFacts, system: System, ids: Mapping[str, str]
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "productCategory": _coding(CATEGORY_SYSTEM, "cells"),
        "productCode": {"text": f"{facts.product}, {KIND_TEXT.get(bag.kind, bag.kind)}"},
        "identifier": [
            {"system": DIN_SYSTEM, "value": bag.din},
            {"system": system.coi, "value": facts.coi},
        ],
        "biologicalSourceEvent": {"system": DIN_SYSTEM, "value": bag.din},
        "processingFacility": [_site(system, bag.facility, bag.facility_name)],
        "productStatus": _coding(
            STATUS_SYSTEM, "unavailable" if bag.state in UNAVAILABLE_STATES else "available"
        ),
        "collection": {"collectedDateTime": _instant(bag.collected_at)},
    }
    parents = [{"reference": f"urn:uuid:{ids[din]}"} for din in bag.parents if din in ids]
    if parents:
        resource["parent"] = parents
    if bag.expires_at is not None:
        resource["expirationDate"] = _instant(bag.expires_at)
    return resource


def _dispense(dispense: DispenseFacts, system: System, ids: Mapping[str, str]) -> dict[str, Any]:
    if dispense.patient_ref is not None:
        patient: dict[str, Any] = {
            "identifier": {
                "type": _concept(IDENTIFIER_TYPE, "MR"),
                "system": system.patient,
                "value": dispense.patient_ref,
            }
        }
    else:
        patient = {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProductDispense",
        "status": "entered-in-error" if dispense.corrected else "issued",
        "originRelationshipType": _concept(ORIGIN_SYSTEM, "autologous"),
        "product": {"reference": f"urn:uuid:{ids[dispense.din]}"},
        "patient": patient,
        "matchStatus": _concept(system.match, "matched"),
        "performer": [
            {
                "actor": {
                    "identifier": {"system": system.user, "value": dispense.performer_email},
                    "display": dispense.performer_name,
                }
            }
        ],
        "location": _site(system, dispense.location, dispense.location_name),
        "whenHandedOver": _instant(dispense.handed_over_at),
    }
    if dispense.prepared_at is not None:
        resource["preparedDate"] = _instant(dispense.prepared_at)
    return resource


def _site(system: System, code: str, name: str) -> dict[str, Any]:
    return {"identifier": {"system": system.site, "value": code}, "display": name}


def _coding(code_system: str, code: str) -> dict[str, str]:
    return {"system": code_system, "code": code}


def _concept(code_system: str, code: str) -> dict[str, Any]:
    return {"coding": [_coding(code_system, code)]}


def _entry(key: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{key}", "resource": resource}


def _uuid(coi: str, kind: str, name: str) -> str:
    """The same identifier for the same thing in every export (uuid5 of our own names)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vein2vein:{coi}:{kind}:{name}"))


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
