"""Alert triage: how much each piece of news matters, what to do about it, and whom it is for.

Every notification kind has a severity: **critical** (a bag on hold or not to be used, a wrong
patient, a bag lost or missing, a leg late past its escalation, a failed batch), **warning** (a
leg at risk or late, a refusal worth a look) or **information** (progress). Critical news stays
pinned until someone acknowledges it; progress can wait for a daily digest. Refusals carry a
severity of their own, by their code: a wrong patient is not a double scan.

The words are for the person who reads them: what happened, what to do, and for which patient
(the reference only for those allowed to see it: the caller passes it or not).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.domain.custody import Role


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFORMATION = "information"


RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFORMATION: 2}
LABEL = {
    Severity.CRITICAL: "Critical",
    Severity.WARNING: "Warning",
    Severity.INFORMATION: "Progress",
}

# refusals by code: a wrong patient is critical; a scan in the wrong place or order, or an
# act the record does not allow, is worth QA's look; a double scan or a misread barcode is not
REFUSAL_SEVERITY: Mapping[str, Severity] = {
    "coi_mismatch": Severity.CRITICAL,
    "thaw_expired": Severity.CRITICAL,
    "on_hold": Severity.WARNING,
    "not_released": Severity.WARNING,
    "wrong_site": Severity.WARNING,
    "not_in_shipment": Severity.WARNING,
    "signature_invalid": Severity.WARNING,
    "sso_refused": Severity.WARNING,
    "label_not_verified": Severity.WARNING,
    "label_not_printed": Severity.WARNING,
    "shipper_unavailable": Severity.WARNING,
    "forbidden": Severity.WARNING,
    "illegal_transition": Severity.INFORMATION,
    "invalid_identifier": Severity.INFORMATION,
    "event_id_reused": Severity.INFORMATION,
    "signature_required": Severity.INFORMATION,
    "invalid_request": Severity.INFORMATION,
    "validation_error": Severity.INFORMATION,
    "not_found": Severity.INFORMATION,
    "invalid_json": Severity.INFORMATION,
    "rate_limited": Severity.WARNING,
    # the vein-to-vein plan: an infusion outside its window is a patient-safety stop; LD
    # before release is a gate worth QA's look; a full calendar is information
    "window_violation": Severity.CRITICAL,
    "product_not_released": Severity.WARNING,
    "no_capacity": Severity.INFORMATION,
}

_CLINICAL = frozenset(
    {Role.APHERESIS_STAFF, Role.MANUFACTURING_OPERATOR, Role.CARE_TEAM, Role.QA, Role.COURIER}
)
_HANDLERS = _CLINICAL - {Role.COURIER}
_EVERYONE = frozenset(Role)

DO_NOT_USE = ("quarantine", "reject", "reject_hold", "destroy")
DEADLINES = ("deadline_at_risk", "deadline_late", "deadline_escalated")
# the plan's news (services.operations.plans): a slip past the infusion window and a failed
# batch's remanufacture proposal are critical; a slip within it and a hold that ran out are
# warnings; the plan's days are progress
PLAN_CRITICAL = ("plan_past_window", "plan_remanufacture", "plan_no_slot")
PLAN_WARNINGS = ("plan_slipped", "plan_expire")
PLAN_PROGRESS = (
    "plan_book",
    "plan_confirm",
    "plan_move",
    "plan_cancel",
    "lymphodepletion",
    "not_infused",
    "plan_ld_window_opens",
    "plan_infusion_day",
    "plan_monitoring_ends",
)
# the kinds that are critical whatever they carry (a refusal and a batch by their contents)
CRITICAL_KINDS = frozenset(
    {
        "hold",
        *DO_NOT_USE,
        "report_lost",
        "deadline_escalated",
        "shipment_discrepancy",
        *PLAN_CRITICAL,
    }
)
# the kinds that can be critical: what the pinned list looks through
MAYBE_CRITICAL_KINDS = frozenset({*CRITICAL_KINDS, "refused_scan", "batch_status"})

# whom each kind is for (the rest of the site may still read it, under "everything")
ROLES: Mapping[str, frozenset[Role]] = {
    "hold": _CLINICAL | {Role.ADMIN},
    **dict.fromkeys(DO_NOT_USE, _HANDLERS | {Role.ADMIN}),
    "report_lost": _CLINICAL | {Role.ADMIN},
    "shipment_discrepancy": _CLINICAL | {Role.ADMIN},
    **dict.fromkeys(DEADLINES, _CLINICAL),
    "refused_scan": _HANDLERS,
    "batch_status": frozenset({Role.CARE_TEAM, Role.MANUFACTURING_OPERATOR, Role.QA}),
    "checkpoint": frozenset({Role.QA, Role.ADMIN}),
    "digest": _EVERYONE,
    "pickup": frozenset({Role.CARE_TEAM, Role.APHERESIS_STAFF, Role.COURIER}),
    "deliver": frozenset({Role.CARE_TEAM, Role.MANUFACTURING_OPERATOR, Role.COURIER}),
    # a family's e-mail about a new stage (services.operations.family_status): sent to the
    # family only, never into a site's feed; the care team who shared the link owns it
    "family_stage": frozenset({Role.CARE_TEAM}),
    **dict.fromkeys(
        (*PLAN_CRITICAL, *PLAN_WARNINGS, *PLAN_PROGRESS),
        frozenset({Role.CARE_TEAM, Role.APHERESIS_STAFF, Role.MANUFACTURING_OPERATOR}),
    ),
    # the sites that meet the patient: the wristband their people scan has changed
    "patient_merge": frozenset({Role.CARE_TEAM, Role.APHERESIS_STAFF, Role.ADMIN}),
}
_PROGRESS_ROLES = frozenset({Role.CARE_TEAM, Role.APHERESIS_STAFF, Role.MANUFACTURING_OPERATOR})

MILESTONES = {
    "enroll": "enrolled",
    "collect": "collected",
    "verify_label": "label checked",
    "cryopreserve": "cryopreserved",
    "pack": "packed",
    "unpack": "taken out of a cancelled shipment",
    "pickup": "picked up by the courier",
    "deliver": "delivered",
    "receive": "received",
    "start_manufacturing": "in manufacturing",
    "produce": "filled from its batch",
    "release": "released by QA",
    "store": "stored",
    "thaw": "thawed",
    "infuse": "infused",
    "release_hold": "released from hold by QA",
    "readings": "temperature readings imported",
    "correct": "a record corrected",
    "plan_book": "plan booked (manufacturing slot held)",
    "plan_confirm": "plan confirmed",
    "plan_move": "plan moved",
    "plan_cancel": "plan cancelled",
    "plan_expire": "plan's hold ran out (slot freed)",
    "lymphodepletion": "lymphodepletion started",
    "not_infused": "recorded as not infused",
    "patient_merge": "re-linked to the hospital's merged patient record",
}


def severity(kind: str, payload: Mapping[str, Any] | None = None) -> Severity:
    """How much a piece of news matters."""
    payload = payload or {}
    if kind in CRITICAL_KINDS:
        return Severity.CRITICAL
    if kind == "refused_scan":
        return refusal_severity(str(payload.get("code") or ""))
    if kind == "batch_status":
        return (
            Severity.CRITICAL if payload.get("batch_status") == "failed" else Severity.INFORMATION
        )
    if kind in ("deadline_at_risk", "deadline_late") or kind in PLAN_WARNINGS:
        return Severity.WARNING
    return Severity.INFORMATION


def refusal_severity(code: str) -> Severity:
    """A refused scan's severity by its code (an unknown code: a warning, to be looked at)."""
    return REFUSAL_SEVERITY.get(code, Severity.WARNING)


def roles_for(kind: str) -> frozenset[Role]:
    return ROLES.get(kind, _PROGRESS_ROLES)


def is_for(kind: str, role: Role) -> bool:
    return role in roles_for(kind)


Clock = Callable[[dt.datetime], str]


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _moment(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Advice:
    severity: Severity
    what: str  # one line: what happened
    todo: str  # what to do about it, for whom
    roles: frozenset[Role]


def advise(
    payload: Mapping[str, Any], *, patient_ref: str | None = None, clock: Clock = _utc
) -> Advice:
    """What a piece of news says to the person reading it. ``patient_ref``: the patient's
    reference, given only for a reader who may see it; ``clock``: how a moment is shown."""
    kind = str(payload.get("kind", ""))
    coi = payload.get("coi")
    who = f"patient {patient_ref} (order {coi})" if patient_ref else f"order {coi}"
    bag = f"bag {payload['din']}" if payload.get("din") else "a bag"
    site = payload.get("site") or "the site"
    level = severity(kind, payload)
    what, todo = _words(kind, payload, who=who, bag=bag, site=site, clock=clock)
    return Advice(severity=level, what=what, todo=todo, roles=roles_for(kind))


def _words(
    kind: str, payload: Mapping[str, Any], *, who: str, bag: str, site: str, clock: Clock
) -> tuple[str, str]:
    shipment = payload.get("shipment") or "its shipment"
    if kind == "hold":
        return (
            f"ON HOLD: {bag} of {who}, a temperature alarm in {shipment}",
            f"Do not use {bag} of {who}: keep it where it is, in the cold, until QA releases "
            "or rejects it (on Holds).",
        )
    if kind == "quarantine":
        return (
            f"QUARANTINED: {bag} of {who} at {site}",
            f"Do not use {bag} of {who}: it is quarantined at {site} until QA disposes of it.",
        )
    if kind in ("reject", "reject_hold"):
        return (
            f"REJECTED: {bag} of {who}",
            f"Do not use {bag} of {who}: QA rejected it. If no other bag remains, plan a new "
            "collection or manufacture with the order's sites.",
        )
    if kind == "destroy":
        return (
            f"DESTROYED: {bag} of {who} at {site}",
            f"{bag.capitalize()} of {who} was destroyed. If it was the patient's last product, "
            "plan the next step with the manufacturing site.",
        )
    if kind == "report_lost":
        return (
            f"LOST: {bag} of {who}, reported by the courier",
            f"Call the courier and the shipment's origin about {bag} of {who} now, and tell QA.",
        )
    if kind == "shipment_discrepancy":
        missing = ", ".join(payload.get("missing") or []) or "bags"
        return (
            f"MISSING from {shipment} at {site}: {missing} of {who}",
            f"Find {missing} of {who} with the courier and the origin; a bag that turns up "
            "later is not used before QA has looked at it.",
        )
    if kind in DEADLINES:
        leg = str(payload.get("leg") or "leg").replace("_", " ")
        due = _moment(payload.get("due_at"))
        when = clock(due) if due else "its deadline"
        state = {
            "deadline_at_risk": "AT RISK",
            "deadline_late": "LATE",
            "deadline_escalated": "LATE PAST ESCALATION",
        }[kind]
        todo = {
            "deadline_at_risk": f"Make sure {site} moves {bag} of {who} before {when}.",
            "deadline_late": f"Ask {site}, which holds {bag} of {who}, when it moves on.",
            "deadline_escalated": f"Call {site}, which holds {bag} of {who}, now: the "
            "patient's treatment plan may have to change.",
        }[kind]
        return f"{state}: the {leg} of {bag} of {who} (due {when})", todo
    if kind == "refused_scan":
        code = str(payload.get("code") or "")
        action = str(payload.get("action") or "scan").replace("_", " ")
        if code == "coi_mismatch":
            return (
                f"WRONG PATIENT: a {action} scan of {bag} of {who} at {site} was refused",
                f"Set {bag} aside and call QA: the scan met another patient's chain of "
                "identity. Do not proceed until QA has looked.",
            )
        level = refusal_severity(code)
        todo = (
            "Nothing to do unless you made the scan: QA reviews it."
            if level is Severity.INFORMATION
            else "QA reviews it; if you made the scan, check the bag and where it is before "
            "scanning again."
        )
        return f"Refused {action} scan ({code}) of {bag} of {who} at {site}", todo
    if kind == "batch_status":
        batch = payload.get("batch") or "the batch"
        status = str(payload.get("batch_status") or "")
        if status == "failed":
            why = f": {payload['reason']}" if payload.get("reason") else ""
            return (
                f"BATCH FAILED: {batch} of {who} at {site}{why}",
                f"Plan a new collection or remanufacture for {who} with the manufacturing site.",
            )
        if status == "released":
            return (
                f"Batch {batch} of {who} released by QA at {site}",
                "No action needed: the product can now be shipped.",
            )
        return (
            f"Batch {batch} of {who} at {status.replace('_', ' ')} at {site}",
            "No action needed.",
        )
    if kind == "plan_past_window":
        window = payload.get("infusion_window") or {}
        if payload.get("after_ld"):
            return (
                f"PAST THE INFUSION WINDOW: the product of {who} reaches the bedside "
                f"{payload.get('treatment_arrival_on')}, after the window "
                f"({window.get('from')} to {window.get('to')})",
                f"Repeat lymphodepletion is flagged on {who}: the physician plans it and "
                "records the new start; the product is infused in its new window.",
            )
        return (
            f"PLAN SLIPPED PAST ITS WINDOW: the product of {who} reaches the bedside "
            f"{payload.get('treatment_arrival_on')}",
            f"Re-plan lymphodepletion for {who} before it starts (the plan shows the new "
            "dates); do not start it on the old date.",
        )
    if kind == "plan_remanufacture":
        proposal = payload.get("proposal") or {}
        slot = proposal.get("manufacturing_start_on") or "no free slot yet"
        return (
            f"REMANUFACTURE PROPOSED for {who}: next free slot {slot}",
            f"Decide with the manufacturing site: the remaining apheresis material or a new "
            f"collection; move the plan to the proposed slot ({slot}) to book it.",
        )
    if kind == "plan_no_slot":
        return (
            f"NO MANUFACTURING SLOT for {who}: the apheresis material arrives "
            f"{payload.get('arrival_on')}, after its slot on {payload.get('missed_slot')}, and "
            "no later slot is free",
            f"Ask the manufacturing site to publish a slot, then move the plan of {who} to it; "
            "do not start lymphodepletion on the old dates.",
        )
    if kind == "plan_slipped":
        return (
            f"Plan of {who} slipped {payload.get('moved_days')} day(s): the product reaches "
            f"the bedside {payload.get('treatment_arrival_on')}",
            "Check the plan's new dates; it is still inside the infusion window.",
        )
    if kind == "plan_ld_window_opens":
        return (f"Lymphodepletion window opens today for {who}", "Start LD as planned.")
    if kind == "plan_infusion_day":
        return (f"Infusion day for {who}", "The product is planned for infusion today.")
    if kind == "plan_monitoring_ends":
        period = str(payload.get("period") or "monitoring").replace("_", " ")
        return (f"{period.capitalize()} period ends today for {who}", "No action needed.")
    if kind == "checkpoint":
        return (
            f"Audit checkpoint {payload.get('id')}: {payload.get('records')} records",
            "Keep this message: it is a witness copy of the record's checkpoint.",
        )
    if kind == "digest":
        return (
            f"Daily digest: {payload.get('count', 0)} progress update(s)",
            "No action needed: progress news of the orders you follow.",
        )
    milestone = MILESTONES.get(kind, kind.replace("_", " "))
    order_level = ("enroll", "readings", "patient_merge", *PLAN_PROGRESS, *PLAN_WARNINGS)
    subject = f"Order {payload.get('coi')}" if kind in order_level else bag.capitalize()
    if kind in order_level and "patient" in who:
        subject = who[0].upper() + who[1:]
    elif kind not in order_level:
        subject = f"{subject} of {who}"
    return f"{subject} {milestone} at {site}", "No action needed."
