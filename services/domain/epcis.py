"""GS1 EPCIS 2.0 and the Core Business Vocabulary (CBV) 2.0, the pure part: how each record of
the custody chain reads as an EPCIS event, the identifiers as HTTP URIs, and the CBV 2.0 event
hash that names each event (its ``eventID``).

The event hash follows the CBV 2.0 algorithm (the normalised "pre-hash" string of an event's
fields in the standard's order, then SHA-256), as the reference implementation
``epcis-event-hash-generator`` computes it for the events we emit; the tests hold every kind of
event we export against that implementation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.domain.errors import InvalidRequest

CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"
EXTENSION_PREFIX = "v2v"
EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)


# identifiers


@dataclass(frozen=True)
class Uris:
    """Our identifiers as HTTP URIs under the installation's base (EPCIS_BASE_URI)."""

    base: str

    def __post_init__(self) -> None:
        if not self.base.startswith(("https://", "http://")) or self.base.endswith("/"):
            raise InvalidRequest("EPCIS_BASE_URI is an http(s) URI without a trailing slash")

    @property
    def vocabulary(self) -> str:
        return f"{self.base}/voc/"

    def din(self, din: str) -> str:
        return f"{self.base}/din/{din}"

    def coi(self, coi: str) -> str:
        return f"{self.base}/coi/{coi}"

    def site(self, code: str) -> str:
        return f"{self.base}/site/{code}"

    def shipment(self, code: str) -> str:
        return f"{self.base}/shipment/{code}"

    def batch(self, code: str) -> str:
        return f"{self.base}/batch/{code}"

    def logger(self, device: str) -> str:
        return f"{self.base}/logger/{device}"

    def logger_file(self, shipment: str, sha256: str) -> str:
        return f"{self.base}/shipment/{shipment}/readings/{sha256}"

    def parse(self, uri: str, kind: str) -> str | None:
        """The identifier in one of our URIs of ``kind`` (din, shipment, site, ...), or None."""
        prefix = f"{self.base}/{kind}/"
        if uri.startswith(prefix) and "/" not in uri[len(prefix) :]:
            return uri[len(prefix) :] or None
        return None


# the custody record as EPCIS: (bizStep, disposition) per record action

STEPS: Mapping[str, tuple[str, str]] = {
    "enroll": ("commissioning", "active"),
    "collect": ("commissioning", "active"),
    "verify_label": ("inspecting", "active"),
    "cryopreserve": ("storing", "active"),
    "pack": ("packing", "container_closed"),
    "pickup": ("shipping", "in_transit"),
    "deliver": ("arriving", "in_transit"),
    "receive": ("receiving", "in_progress"),
    "start_manufacturing": ("other", "in_progress"),
    "produce": ("commissioning", "active"),
    "release": ("inspecting", "conformant"),
    "store": ("storing", "active"),
    "thaw": ("other", "active"),
    "infuse": ("dispensing", "dispensed"),
    "quarantine": ("holding", "unavailable"),
    "reject": ("inspecting", "non_conformant"),
    "destroy": ("destroying", "destroyed"),
    "report_lost": ("other", "unknown"),
    "readings": ("sensor_reporting", "active"),
    "hold": ("holding", "unavailable"),
    "release_hold": ("inspecting", "conformant"),
    "reject_hold": ("inspecting", "non_conformant"),
    "correct": ("other", "active"),
    "unpack": ("unpacking", "active"),
    "patient_merge": ("other", "active"),
}
BATCH_STEPS: Mapping[str, tuple[str, str]] = {
    "released": ("inspecting", "conformant"),
    "failed": ("inspecting", "non_conformant"),
}
BATCH_IN_PROGRESS = ("other", "in_progress")
# where the bags go and come from, for the events of a journey
JOURNEY = frozenset({"pack", "pickup", "deliver", "receive"})
ADDS = frozenset({"enroll", "collect"})
ENDS = frozenset({"destroy", "infuse"})


def steps_for(action: str, batch_status: str | None = None) -> tuple[str, str]:
    if action == "batch_status":
        return BATCH_STEPS.get(batch_status or "", BATCH_IN_PROGRESS)
    return STEPS.get(action, ("other", "active"))


def event_time(moment: dt.datetime) -> str:
    """EPCIS times: UTC, to the millisecond, with Z."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def document(
    events: Sequence[dict[str, Any]],
    *,
    uris: Uris,
    created: dt.datetime,
    kind: str = "EPCISDocument",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@context": [CONTEXT_URL, {EXTENSION_PREFIX: uris.vocabulary}],
        "type": kind,
        "schemaVersion": "2.0",
        "creationDate": event_time(created),
    }
    if kind == "EPCISDocument":
        body["epcisBody"] = {"eventList": list(events)}
    return body


# the CBV 2.0 event hash

# the standard's order of an event's fields in the pre-hash string (CBV 2.0, section 8.9.2)
_QUANTITY = [("epcClass", None), ("quantity", None), ("uom", None)]
PROP_ORDER: list[tuple[Any, Any]] = [
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("parentID", None),
    ("epcList", [("epc", None)]),
    ("inputEPCList", [("epc", None)]),
    ("childEPCs", [("epc", None)]),
    ("quantityList", [("quantityElement", _QUANTITY)]),
    ("childQuantityList", [("quantityElement", _QUANTITY)]),
    ("inputQuantityList", [("quantityElement", _QUANTITY)]),
    ("outputEPCList", [("epc", None)]),
    ("outputQuantityList", [("quantityElement", _QUANTITY)]),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", [("set", None), ("unset", None)]),
    ("readPoint", [("id", None)]),
    ("bizLocation", [("id", None)]),
    ("bizTransactionList", [(("type", None), ("bizTransaction", None))]),
    ("sourceList", [(("type", None), ("source", None))]),
    ("destinationList", [(("type", None), ("destination", None))]),
    (
        "sensorElementList",
        [
            (
                "sensorElement",
                [
                    (
                        "sensorMetadata",
                        [
                            (name, None)
                            for name in (
                                "time",
                                "startTime",
                                "endTime",
                                "deviceID",
                                "deviceMetadata",
                                "rawData",
                                "dataProcessingMethod",
                                "bizRules",
                            )
                        ],
                    ),
                    (
                        "sensorReport",
                        [
                            (name, None)
                            for name in (
                                "type",
                                "exception",
                                "deviceID",
                                "deviceMetadata",
                                "rawData",
                                "dataProcessingMethod",
                                "time",
                                "microorganism",
                                "chemicalSubstance",
                                "value",
                                "component",
                                "stringValue",
                                "booleanValue",
                                "hexBinaryValue",
                                "uriValue",
                                "minValue",
                                "maxValue",
                                "meanValue",
                                "sDev",
                                "percRank",
                                "percValue",
                                "uom",
                                "coordinateReferenceSystem",
                            )
                        ],
                    ),
                ],
            )
        ],
    ),
]
IGNORED = ("recordTime", "eventID", "type", "errorDeclaration")
UNORDERED_LISTS = ("bizTransaction", "source", "destination")
PAIR_LISTS = ("sourceList", "destinationList", "bizTransactionList")
# the bare CBV words an event may carry, and the web vocabulary each stands for
_VOCABULARY: Mapping[str, str] = {
    "bizStep": CBV + "BizStep-",
    "disposition": CBV + "Disp-",
}
_LIST_TYPES: Mapping[str, str] = {
    "bizTransactionList": CBV + "BTT-",
    "sourceList": CBV + "SDT-",
    "destinationList": CBV + "SDT-",
}
SENSOR_TYPES = {"Temperature"}
ALERT_TYPES = {"ALARM_CONDITION", "ERROR_CONDITION"}

Node = tuple[Any, str, list[Any]]  # (name, text, children), the algorithm's own model


def event_hash(event: Mapping[str, Any], namespaces: Mapping[str, str]) -> str:
    """The CBV 2.0 event hash of one event (``ni:///sha-256;...?ver=CBV2.0``). ``namespaces``:
    the document's JSON-LD prefixes of extension fields (``{"v2v": "https://.../voc/"}``)."""
    return (
        "ni:///sha-256;"
        + hashlib.sha256(pre_hash(event, namespaces).encode()).hexdigest()
        + ("?ver=CBV2.0")
    )


def pre_hash(event: Mapping[str, Any], namespaces: Mapping[str, str]) -> str:
    expanded = _expand_vocabulary(dict(event))
    root = _corrected(_to_nodes(expanded, dict(namespaces)))
    children = root[2]
    return (
        "eventType="
        + str(event["type"])
        + _ordered(children, PROP_ORDER)
        + _remaining([c for c in children if c[0] not in IGNORED])
    )


def _expand_vocabulary(event: dict[str, Any]) -> dict[str, Any]:
    """Bare CBV words to their web vocabulary URIs (what JSON-LD expansion makes of them)."""
    for name, prefix in _VOCABULARY.items():
        if isinstance(event.get(name), str) and ":" not in event[name]:
            event[name] = prefix + event[name]
    for name, prefix in _LIST_TYPES.items():
        if isinstance(event.get(name), list):
            event[name] = [
                {**item, "type": prefix + item["type"]}
                if isinstance(item.get("type"), str) and ":" not in item["type"]
                else item
                for item in event[name]
            ]
    if isinstance(event.get("sensorElementList"), list):
        event["sensorElementList"] = [
            {**element, "sensorReport": [_report(r) for r in element.get("sensorReport", [])]}
            if isinstance(element, dict)
            else element
            for element in event["sensorElementList"]
        ]
    return event


def _report(report: Any) -> Any:
    if not isinstance(report, dict):
        return report
    report = dict(report)
    if report.get("type") in SENSOR_TYPES:
        report["type"] = GS1_VOC + report["type"]
    if report.get("exception") in ALERT_TYPES:
        report["exception"] = GS1_VOC + report["exception"]
    return report


def _key(key: str, namespaces: dict[str, str]) -> str:
    prefix, colon, rest = key.partition(":")
    if colon and prefix in namespaces:
        return "{" + namespaces[prefix] + "}" + rest
    return key


def _to_nodes(value: Any, namespaces: dict[str, str]) -> Node:
    node: Node = ("", "", [])
    if isinstance(value, list):
        for child in value:
            node[2].append(_to_nodes(child, namespaces))
        if not any(k in value for k in UNORDERED_LISTS):
            node[2].sort()
    elif isinstance(value, dict):
        if "type" in value:
            node = (value["type"], "", [])
        for key, item in value.items():
            if key in ("#text", "rdfs:comment", "comment"):
                continue
            child = _to_nodes(item, namespaces)
            name = _key(key, namespaces)
            if isinstance(item, list):
                node[2].extend((name, grand[1], grand[2]) for grand in child[2])
            else:
                node[2].append((name, child[1], child[2]))
        if not any(k in value for k in UNORDERED_LISTS):
            node[2].sort()
    else:
        return ("", _text(value, namespaces), [])
    return node


def _text(value: Any, namespaces: dict[str, str]) -> str:
    if isinstance(value, str):
        prefix, colon, rest = value.partition(":")
        if colon and prefix in namespaces:
            return namespaces[prefix] + rest
        return value
    return str(value)


def _corrected(node: Node) -> Node:
    """The JSON model made the XML model's shape: list items named, pairs kept in order."""
    children = list(node[2])
    lists: dict[str, list[Node]] = {}
    for element in [e for e in children if not isinstance(e[0], tuple) and e[0].endswith("List")]:
        lists.setdefault(element[0], []).append((element[0][:-4], element[1], element[2]))
        children.remove(element)
    for name, elements in lists.items():
        if name in PAIR_LISTS:
            children.append((name, "", [(e[2][0], e[2][1]) for e in elements]))
        else:
            children.append((name, "", elements))
    epcs: list[Node] = [("epc", e[1], []) for e in children if e[0] == "childEPCs"]
    children = [e for e in children if e[0] != "childEPCs"]
    if epcs:
        children.append(("childEPCs", "", epcs))
    fixed = [e if e[0] in PAIR_LISTS else _corrected(e) for e in children]
    name = node[0]
    if name in ("inputEPC", "outputEPC"):
        return ("epc", node[1], fixed)
    if name in ("inputQuantity", "outputQuantity", "childQuantity") or (
        name == "quantity" and fixed
    ):
        return ("quantityElement", node[1], fixed)
    return (name, node[1], fixed)


def _timestamp(text: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.astimezone()
    moment = moment.astimezone(dt.UTC)
    moment = moment.replace(microsecond=round(moment.microsecond, -3) % 1_000_000)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def _canonical(text: str) -> str:
    text = (
        text.replace("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-")
        .replace("urn:epcglobal:cbv:disp:", CBV + "Disp-")
        .replace("urn:epcglobal:cbv:btt:", CBV + "BTT-")
        .replace("urn:epcglobal:cbv:sdt:", CBV + "SDT-")
        .replace("urn:epcglobal:cbv:er:", CBV + "ER-")
    )
    try:
        number = float(text)
    except ValueError:
        return text
    try:
        return str(int(number)) if int(number) == number else str(number)
    except (OverflowError, ValueError):
        return str(number)


def _child(child: Node, order: Any) -> str:
    grand = _ordered(child[2], order) if order else ""
    text = ""
    if child[1]:
        text = child[1].strip()
        name = str(child[0]).lower()
        text = _timestamp(text) if "time" in name and "offset" not in name else _canonical(text)
        if text:
            text = "=" + text
    if text or grand:
        return str(child[0]) + text + grand
    return ""


def _extensions(children: list[Any]) -> list[Any]:
    if len(children) <= 1:
        return []
    if any("eventTime" in str(c[0]) or "action" in str(c[0]) for c in children):
        return []
    found = [c for c in children if isinstance(c, tuple) and "{" in str(c[0]) and "/}" in str(c[0])]
    for element in found:
        children.remove(element)
    return found


def _ordered(children: list[Any], order: Any) -> str:
    text = ""
    extensions = _extensions(children)
    for name, sub_order in order:
        values = []
        for child in [c for c in children if c[0] == name]:
            piece = _child(child, sub_order)
            if piece:
                values.append(piece)
            if not child[2]:
                children.remove(child)
        values.sort()
        if "".join(values):
            text = "".join([text, *values]) if text else "".join(values)
    if extensions:
        text = text + _generic(extensions)
    return text


def _generic(children: Sequence[Any]) -> str:
    values = []
    for child in children:
        if isinstance(child, tuple) and len(child) == 2 and isinstance(child[0], tuple):
            values.append(_generic(child))
        else:
            text = child[1].strip()
            if text:
                text = "=" + _canonical(text)
            values.append(str(child[0]) + text + _generic(child[2]))
    if len(children) > 1 and not any(c[0] in UNORDERED_LISTS for c in children):
        values.sort()
    return "".join(values)


def _remaining(children: list[Any]) -> str:
    return _generic(children) if children else ""
