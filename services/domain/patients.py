"""Patient record merges from the hospital: which reference survives which.

A hospital that finds two medical record numbers for one person merges them and tells its
systems with an HL7 v2 ADT^A40 ("merge patient - patient identifier list"): each PID segment
names the surviving patient (PID-3), the MRG segment after it the record merged into it
(MRG-1). Parsed with the ``hl7`` library; the identifier taken from a list is the one typed
MR (medical record number), else the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7

from services.domain.custody import same_patient
from services.domain.errors import InvalidRequest

MAX_REF = 64  # orders.patient_ref
MERGE_EVENTS = frozenset({"A40"})


@dataclass(frozen=True)
class Merge:
    old_ref: str
    new_ref: str


@dataclass(frozen=True)
class MergeMessage:
    merges: tuple[Merge, ...]
    control_id: str  # MSH-10, for the acknowledgement and the record
    source: str  # "ADT^A40" or "api"


def merge(old_ref: str, new_ref: str) -> Merge:
    old, new = old_ref.strip(), new_ref.strip()
    for name, value in (("old_ref", old), ("new_ref", new)):
        if not value:
            raise InvalidRequest(f"{name} is empty")
        if len(value) > MAX_REF:
            raise InvalidRequest(f"{name} is longer than {MAX_REF} characters")
    if same_patient(old, new):
        raise InvalidRequest("the old and the new reference are the same")
    return Merge(old, new)


def parse_adt_a40(text: str) -> MergeMessage:
    """An ADT^A40 message (ER7, segments separated by carriage returns or newlines) as the
    merges it asks for: InvalidRequest naming what is missing."""
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    normalised = "\r".join(line for line in lines if line.strip())
    if not normalised.startswith("MSH"):
        raise InvalidRequest("an HL7 v2 message starts with its MSH segment")
    try:
        message = hl7.parse(normalised)
        kind = message.segment("MSH")[9]
        control_id = str(message.segment("MSH")[10])
        encoding = str(message.segment("MSH")[2])
        component, repetition = encoding[0], encoding[1]
    except Exception as error:  # untrusted text: whatever the parser trips on is a refusal
        raise InvalidRequest(f"not an HL7 v2 message ({type(error).__name__})") from None
    # MSH-9: message code ^ trigger event (^ structure); one without components names no event
    code, _, rest = str(kind).partition(component)
    event = rest.split(component)[0]
    if not event:
        raise InvalidRequest(
            f"MSH-9 ({str(kind)[:40]!r}) names no trigger event: a patient merge is ADT^A40"
        )
    if code != "ADT" or event not in MERGE_EVENTS:
        raise InvalidRequest(f"a patient merge is an ADT^A40 message, not {code}^{event}")
    merges: list[Merge] = []
    survivor: str | None = None
    for segment in message:
        name = str(segment[0])
        if name == "PID":
            survivor = _identifier(segment, 3, component, repetition)
        elif name == "MRG":
            if survivor is None:
                raise InvalidRequest("an MRG segment comes after the PID of the surviving patient")
            merged = _identifier(segment, 1, component, repetition)
            if merged is None:
                raise InvalidRequest("the MRG segment names no prior identifier (MRG-1)")
            merges.append(merge(merged, survivor))
            survivor = None
    if not merges:
        raise InvalidRequest("the message has no PID and MRG segments to merge")
    return MergeMessage(tuple(merges), control_id[:64], f"ADT^{event}")


def _identifier(segment: hl7.Segment, field: int, component: str, repetition: str) -> str | None:
    """The MR identifier of a CX list (PID-3, MRG-1), else its first."""
    try:
        text = str(segment[field])
    except IndexError:
        return None
    found = []
    for item in text.split(repetition):
        parts = item.split(component)
        value = parts[0].strip()
        if value:
            found.append((parts[4].strip() if len(parts) > 4 else "", value))
    for kind, value in found:
        if kind == "MR":
            return value
    return found[0][1] if found else None
