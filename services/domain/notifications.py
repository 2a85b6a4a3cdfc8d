"""Notifications, the pure part: what can be subscribed to, retry timing, safe targets, wording."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from services.domain.custody import EVENT_ACTIONS
from services.domain.errors import InvalidRequest
from services.domain.targets import check_email_address, parse_webhook_url

REFUSED_SCAN = "refused_scan"
SHIPMENT_DISCREPANCY = "shipment_discrepancy"  # manifest bags that did not arrive
CHECKPOINT = "checkpoint"  # a signed audit checkpoint, for witnesses (asked for by name only)
DIGEST = "digest"  # a day's progress news in one message, for those who asked for it
DEADLINE_KINDS = ("deadline_at_risk", "deadline_late", "deadline_escalated")
# the vein-to-vein plan's news that is not an event on the chain (services.operations.plans)
PLAN_NEWS = {
    "plan_slipped": "plan slipped",
    "plan_past_window": "PLAN SLIPPED PAST THE INFUSION WINDOW",
    "plan_remanufacture": "REMANUFACTURE PROPOSED after a failed batch",
    "plan_no_slot": "NO MANUFACTURING SLOT after the material missed its slot",
    "plan_ld_window_opens": "lymphodepletion window opens today",
    "plan_infusion_day": "infusion day",
    "plan_monitoring_ends": "a monitoring period ends today",
}
EVENT_KINDS: tuple[str, ...] = (
    *EVENT_ACTIONS,
    REFUSED_SCAN,
    *DEADLINE_KINDS,
    SHIPMENT_DISCREPANCY,
    CHECKPOINT,
    *PLAN_NEWS,
)


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    FEED = "feed"  # the in-app feed of a site; delivered when written


class NotificationState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after the last attempt, or the endpoint is gone; replayable
    # progress news for a subscriber who takes a daily digest: kept until folded into it
    HELD = "held"


def check_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    unknown = sorted(set(events) - set(EVENT_KINDS))
    if unknown or not events:
        raise InvalidRequest(
            f"unknown event kinds {unknown}; choose from {', '.join(EVENT_KINDS)}"
            if unknown
            else "events must name at least one kind, or be left out for all"
        )
    return sorted(set(events))


def wants(events: list[str] | None, kind: str) -> bool:
    return events is None or kind in events


def check_target(channel: Channel, target: str, *, allow_private: bool) -> str:
    """The target as it will be stored, or a clear refusal (see :mod:`services.domain.targets`)."""
    if channel is Channel.EMAIL:
        return check_email_address(target)
    if channel is Channel.WEBHOOK:
        return parse_webhook_url(target, allow_private=allow_private).url
    raise InvalidRequest("subscribe to the email or webhook channel; the feed is every site's own")


def backoff(attempts: int, *, base: float, cap: float, jitter: float) -> dt.timedelta:
    """Exponential back-off after ``attempts`` failures; ``jitter`` in [0, 1) spreads retries
    by -20% to +20% so that receivers coming back are not hit by every sender at once."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=delay * (0.8 + 0.4 * jitter))


MILESTONES = {
    "collect": "collected",
    "verify_label": "label verified",
    "cryopreserve": "cryopreserved",
    "pack": "packed",
    "pickup": "picked up by the courier",
    "deliver": "delivered",
    "receive": "received",
    "start_manufacturing": "in manufacturing",
    "quarantine": "QUARANTINED",
    "reject": "REJECTED",
    "destroy": "DESTROYED",
    "report_lost": "REPORTED LOST",
    "produce": "filled from its batch",
    "release": "released by QA",
    "store": "stored",
    "thaw": "thawed",
    "infuse": "INFUSED",
    "release_hold": "released from hold by QA",
    "reject_hold": "REJECTED by QA after its hold",
}


def summary(payload: dict[str, Any]) -> str:
    """One line for a subject, a feed item, a push: what happened to which bag, where."""
    if payload["kind"] in DEADLINE_KINDS:
        state = {
            "deadline_at_risk": "AT RISK",
            "deadline_late": "LATE",
            "deadline_escalated": "LATE, ESCALATED",
        }[payload["kind"]]
        return (
            f"{state}: {payload['leg'].replace('_', ' ')} of bag {payload['din']} of "
            f"{payload['coi']} (at {payload['site']}, due {payload['due_at'][:16]} UTC)"
        )
    if payload["kind"] == REFUSED_SCAN:
        return (
            f"Refused scan ({payload['code']}) of bag {payload.get('din') or '?'} "
            f"of {payload['coi']} at {payload['site']}"
        )
    if payload["kind"] == SHIPMENT_DISCREPANCY:
        return (
            f"MISSING from shipment {payload['shipment']} at {payload['site']}: "
            f"{', '.join(payload['missing'])} of {payload['coi']}"
        )
    if payload["kind"] == "batch_status":
        status = payload["batch_status"]
        what = {"released": "RELEASED by QA", "failed": "FAILED"}.get(
            status, f"at {status.replace('_', ' ')}"
        )
        why = f": {payload['reason']}" if payload.get("reason") else ""
        return f"Batch {payload['batch']} of {payload['coi']} {what} at {payload['site']}{why}"
    if payload["kind"] == CHECKPOINT:
        return (
            f"Audit checkpoint {payload['id']}: {payload['records']} records in "
            f"{len(payload['heads'])} chains, root {str(payload['root'])[:16]}..., signed by key "
            f"{payload.get('key_id') or '(none)'}: keep this message as a witness copy"
        )
    if payload["kind"] == "family_stage":  # the family's e-mail: no identifier, no site code
        return f"Update from {payload['site_name']}: {payload['title']}"
    if payload["kind"] == "enroll":
        return f"Order {payload['coi']} enrolled at {payload['site']}"
    if payload["kind"] == DIGEST:
        return (
            f"Daily digest: {payload['count']} progress update(s) of your orders, until "
            f"{str(payload['until'])[:16].replace('T', ' ')} UTC"
        )
    if payload["kind"] == "hold":
        return (
            f"ON HOLD: bag {payload['din']} of {payload['coi']}, temperature alarm in shipment "
            f"{payload['shipment']}: do not use it until QA disposes of it"
        )
    if payload["kind"] == "readings":
        return (
            f"Temperature readings of shipment {payload['shipment']} for {payload['coi']} "
            f"imported at {payload['site']}"
        )
    if payload["kind"] == "patient_merge":
        return (
            f"Order {payload['coi']} re-linked to the hospital's merged patient record at "
            f"{payload['site']}: the new wristband is the one to scan"
        )
    what = MILESTONES.get(payload["kind"], payload["kind"].replace("_", " "))
    if not payload.get("din"):  # an order's own news: its plan, lymphodepletion
        what = PLAN_NEWS.get(payload["kind"], what)
        return f"Order {payload['coi']}: {what} at {payload.get('site') or '?'}"
    return f"Bag {payload['din']} of {payload['coi']} {what} at {payload['site']}"


def body_text(payload: dict[str, Any]) -> str:
    lines = [summary(payload), ""]
    if payload["kind"] == DIGEST:
        listed = [
            f"{str(item['at'])[:16].replace('T', ' ')} UTC  {item['summary']}"
            for item in payload["items"]
        ]
        more = payload["count"] - len(payload["items"])
        tail = [f"... and {more} more"] if more > 0 else []
        return "\n".join([*lines, *listed, *tail, ""])
    if payload["kind"] == CHECKPOINT:
        # the witness copy itself: `vein2vein audit verify --witness FILE` reads it back
        document = {k: v for k, v in payload.items() if k != "kind"}
        return "\n".join([*lines, json.dumps(document, indent=2, sort_keys=True), ""])
    for key in (
        "coi",
        "din",
        "batch",
        "batch_status",
        "reason",
        "kind",
        "from_state",
        "to_state",
        "site",
        "custodian",
        "shipment",
        "sequence",
        "occurred_at",
        "recorded_at",
        "code",
        "detail",
    ):
        if payload.get(key) is not None:
            lines.append(f"{key.replace('_', ' '):12} {payload[key]}")
    if payload.get("needs_review"):
        lines.append("This scan arrived late and is flagged for review.")
    return "\n".join(lines) + "\n"
