"""The family's view of an order: where the cells are, in plain words, and when they are
expected back. Pure: stages from the order's record, news that waits for a clinician, date
ranges, share-link rules and the family's quiet hours.

What the family may read is deliberately small: a stage, a few sentences, date ranges and the
treatment site's name and phone. No identifier, no person, no other site.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from services.domain import custody
from services.domain.batches import STEPS, BatchState
from services.domain.custody import UnitKind, UnitState
from services.domain.errors import InvalidRequest

# share links
TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits, 43 URL-safe characters
MIN_TOKEN_BITS = 128
DEFAULT_DAYS = 60
MAX_DAYS = 180
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")

# news that needs a clinician first waits at most this long; then the page says the care team
# will be in touch
HOLD_LIMIT = dt.timedelta(hours=72)

# the family's e-mails: on stage changes only, at most one a day, never at night
MIN_BETWEEN_EMAILS = dt.timedelta(hours=24)
QUIET_FROM_HOUR = 21  # local time of the treatment site
QUIET_UNTIL_HOUR = 8
FAMILY_KIND = "family_stage"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def plausible_token(text: str) -> bool:
    """Worth looking up: a share link's shape (anything else is simply not found)."""
    return bool(_TOKEN.fullmatch(text))


def link_expiry(now: dt.datetime, days: int | None) -> dt.datetime:
    days = DEFAULT_DAYS if days is None else days
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"a status link lasts 1 to {MAX_DAYS} days (default {DEFAULT_DAYS})")
    return now + dt.timedelta(days=days)


def stop_signature(secret_key: str, subscription_id: int) -> str:
    """The unsubscribe link's proof: keyed by the installation's secret, so the e-mail can
    carry it without anything stored (the share link's own token is kept only as a hash)."""
    message = f"family-e-mail-stop:{subscription_id}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:40]


def check_stop_signature(secret_key: str, subscription_id: int, given: str) -> bool:
    # compare_digest takes ASCII text only: anything else is no signature of ours
    if not re.fullmatch(r"[0-9a-f]{40}", given):
        return False
    return hmac.compare_digest(stop_signature(secret_key, subscription_id), given)


# the stages


class Stage(StrEnum):
    COLLECTED = "collected"
    TO_PLANT = "to_plant"
    BEING_MADE = "being_made"
    TESTING = "testing"
    ON_ITS_WAY_BACK = "on_its_way_back"
    ARRIVED = "arrived"
    GIVEN = "given"


STAGES: tuple[Stage, ...] = tuple(Stage)
TITLES = {
    Stage.COLLECTED: "Cells collected",
    Stage.TO_PLANT: "Travelling to the plant",
    Stage.BEING_MADE: "Being made",
    Stage.TESTING: "Quality testing",
    Stage.ON_ITS_WAY_BACK: "On its way back",
    Stage.ARRIVED: "Arrived at the hospital",
    Stage.GIVEN: "Given",
}
WORDS = {
    Stage.COLLECTED: "The cells have been collected and are being prepared for the journey.",
    Stage.TO_PLANT: "The cells are travelling, frozen, to the plant where the treatment is made.",
    Stage.BEING_MADE: "The plant is making the treatment from the cells. This takes a while.",
    Stage.TESTING: "The treatment is made. It is being tested before it may leave the plant.",
    Stage.ON_ITS_WAY_BACK: "The treatment passed its tests and is on its way to the hospital.",
    Stage.ARRIVED: "The treatment is at the hospital, stored safely until the day it is given.",
    Stage.GIVEN: "The treatment has been given.",
}

_APHERESIS = {
    UnitState.COLLECTED: Stage.COLLECTED,
    UnitState.LABEL_VERIFIED: Stage.COLLECTED,
    UnitState.CRYOPRESERVED: Stage.COLLECTED,
    UnitState.PACKED: Stage.COLLECTED,
    UnitState.IN_TRANSIT: Stage.TO_PLANT,
    UnitState.DELIVERED: Stage.TO_PLANT,
    UnitState.RECEIVED: Stage.BEING_MADE,
    UnitState.IN_MANUFACTURING: Stage.BEING_MADE,
}
_PRODUCT = {
    UnitState.PRODUCED: Stage.BEING_MADE,
    UnitState.RELEASED: Stage.ON_ITS_WAY_BACK,
    UnitState.PACKED: Stage.ON_ITS_WAY_BACK,
    UnitState.IN_TRANSIT: Stage.ON_ITS_WAY_BACK,
    UnitState.DELIVERED: Stage.ON_ITS_WAY_BACK,
    UnitState.RECEIVED: Stage.ARRIVED,
    UnitState.STORED: Stage.ARRIVED,
    UnitState.THAWED: Stage.ARRIVED,
    UnitState.INFUSED: Stage.GIVEN,
}
_BATCH: dict[BatchState, Stage] = {
    **dict.fromkeys((s for s in STEPS if s is not BatchState.QC_TESTING), Stage.BEING_MADE),
    BatchState.QC_TESTING: Stage.TESTING,
    BatchState.RELEASED: Stage.ON_ITS_WAY_BACK,
}
# a bag leaving the chain or held does not move the family's stage back or on: what happened
# is news of its own (below)
_NOT_PROGRESS = custody.HELD_STATES | {UnitState.REJECTED, UnitState.DESTROYED, UnitState.LOST}


@dataclass(frozen=True, slots=True)
class Step:
    """One record of the order's chain, as far as the family's page reads it."""

    sequence: int
    action: str
    kind: UnitKind | None  # the bag's kind; None for an order's or a batch's record
    unit_id: int | None
    to_state: UnitState | None
    batch_id: int | None
    batch_state: BatchState | None


def stage_of(steps: Iterable[Step]) -> Stage | None:
    """The furthest stage the order's bags and batches have reached (None: nothing collected
    yet), replaying its records in order."""
    bags: dict[int, tuple[UnitKind, UnitState]] = {}
    batches: dict[int, BatchState] = {}
    batch_of: dict[int, int] = {}  # bag -> the batch it went into (or came out of)
    for step in sorted(steps, key=lambda s: s.sequence):
        if step.unit_id is not None and step.kind is not None and step.to_state is not None:
            if step.batch_id is not None:
                batch_of[step.unit_id] = step.batch_id
            if step.to_state in custody.HELD_STATES:
                continue  # held: the stage stays where it was; the hold is news of its own
            if step.to_state in _NOT_PROGRESS:
                bags.pop(step.unit_id, None)  # out of the chain: it carries the order no more
            else:
                bags[step.unit_id] = (step.kind, step.to_state)
        elif step.batch_id is not None and step.batch_state is BatchState.FAILED:
            # a failed batch carries the order no more, nor do the bags that went into it:
            # the stage is what the rest (a new collection, say) has reached
            batches.pop(step.batch_id, None)
            for unit_id in [u for u, b in batch_of.items() if b == step.batch_id]:
                bags.pop(unit_id, None)
        elif step.batch_id is not None and step.batch_state is not None:
            batches[step.batch_id] = step.batch_state
    reached = [
        (_APHERESIS if kind is UnitKind.APHERESIS else _PRODUCT).get(state)
        for kind, state in bags.values()
    ] + [_BATCH.get(state) for state in batches.values()]
    found = [stage for stage in reached if stage is not None]
    return max(found, key=STAGES.index) if found else None


# news that needs a clinician first

NEWS_WORDS = {
    custody.HOLD: (
        "The cells were paused while the team checked the temperature record of their journey."
    ),
    "quarantine": "A bag was set aside for extra checks.",
    "reject": "A bag did not meet its specification and will not be used.",
    custody.REJECT_HOLD: "After checks, a bag will not be used.",
    "destroy": "A bag will not be used.",
    "report_lost": "A bag could not be accounted for during its journey.",
    "batch_failed": "Making the treatment did not succeed this time.",
}


def news_kind(step: Step) -> str | None:
    """Whether a record is news a clinician tells the family first (a hold after an
    excursion, a bag out of specification or lost, a failed batch), and which."""
    if step.action == custody.BATCH_STATUS and step.batch_state is BatchState.FAILED:
        return "batch_failed"
    if step.action in NEWS_WORDS:
        return step.action
    return None


# dates


@dataclass(frozen=True, slots=True)
class DayRange:
    first: dt.date
    last: dt.date


def day_range(expected: dt.datetime, *, now: dt.datetime, tz: dt.tzinfo) -> DayRange:
    """A range of days around an expected moment, never to the minute: wider the further away
    it is (a day either side at least, a sixth of the time still to go otherwise), and never
    starting before today."""
    ahead = max(0.0, (expected - now).total_seconds() / 86400)
    margin = dt.timedelta(days=max(1, math.ceil(ahead / 6)))
    today = now.astimezone(tz).date()
    first = max(today, (expected - margin).astimezone(tz).date())
    last = max(first, (expected + margin).astimezone(tz).date())
    return DayRange(first, last)


def quiet_hours(moment: dt.datetime, tz: dt.tzinfo) -> bool:
    """Night at the treatment site: no e-mail to the family."""
    hour = moment.astimezone(tz).hour
    return hour >= QUIET_FROM_HOUR or hour < QUIET_UNTIL_HOUR


def may_email(*, now: dt.datetime, last_sent: dt.datetime | None, tz: dt.tzinfo) -> bool:
    """At most one e-mail a day, and none at night."""
    if quiet_hours(now, tz):
        return False
    return last_sent is None or now - last_sent >= MIN_BETWEEN_EMAILS


# the treatment site's phone


def check_phone(phone: str | None) -> str | None:
    """A phone number as families dial it: digits, spaces and + ( ) - . only."""
    if phone is None:
        return None
    phone = " ".join(phone.split())
    if not phone:
        return None
    if len(phone) > 40 or not all(c.isdigit() or c in " +()-." for c in phone):
        raise InvalidRequest("a phone number has digits, spaces and + ( ) - . only (40 at most)")
    if sum(c.isdigit() for c in phone) < 3:
        raise InvalidRequest("a phone number needs at least three digits")
    return phone
