"""Products and who owns their safety settings. Pure.

A product's turnaround policy, its alarm rule and its thaw-to-infusion limit bind every site
that handles it, so they belong to one **owning manufacturing site** (where the marketing
authorisation holder's QA sits), named when the product is set up; other plants making it follow
its settings. Only QA of that site changes them, with a reason and an e-signature, and only
within clinical bounds (``services.domain.condition.check_rule`` for the alarm rule,
:func:`thaw_limit_bound` for the thaw limit, ``services.domain.sla`` for the rest).

The known products are seeded with the thaw-to-infusion limit of their label, each value with
its source; a value nobody confirmed stays empty and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.domain.custody import Role
from services.domain.errors import Forbidden, InvalidRequest

# without a confirmed label value, no thaw limit is longer than DOMAIN.md's general rule
DEFAULT_THAW_LIMIT_MINUTES = 30.0
MIN_THAW_LIMIT_MINUTES = 5.0
SETTINGS_ROLE = Role.QA


@dataclass(frozen=True, slots=True)
class ProductSeed:
    code: str
    name: str
    label_thaw_minutes: float | None  # None: not confirmed against the current label
    source: str


# Check each value against the current label before relying on it (issue 30's table).
SEED: tuple[ProductSeed, ...] = (
    ProductSeed(
        "tisa-cel",
        "tisagenlecleucel (Kymriah)",
        30.0,
        "Kymriah label, as gathered in issue 30's table: infuse within 30 minutes of thaw "
        "(not re-checked against the current label here)",
    ),
    ProductSeed(
        "axi-cel",
        "axicabtagene ciloleucel (Yescarta)",
        None,
        "Yescarta label: 3 hours after thaw in issue 30's table, marked unconfirmed; until "
        "someone confirms it against the current label, the general 30-minute rule applies",
    ),
    ProductSeed(
        "brexu-cel",
        "brexucabtagene autoleucel (Tecartus)",
        180.0,
        "Tecartus label, as gathered in issue 30's table: within 3 hours of thaw (not "
        "re-checked against the current label here)",
    ),
    ProductSeed(
        "liso-cel",
        "lisocabtagene maraleucel (Breyanzi)",
        120.0,
        "Breyanzi label, as gathered in issue 30's table: within 2 hours of thaw (not "
        "re-checked against the current label here)",
    ),
    ProductSeed(
        "ide-cel",
        "idecabtagene vicleucel (Abecma)",
        60.0,
        "Abecma label, as gathered in issue 30's table: within 1 hour of thaw, per bag "
        "(not re-checked against the current label here)",
    ),
    ProductSeed(
        "cilta-cel",
        "ciltacabtagene autoleucel (Carvykti)",
        150.0,
        "Carvykti label, as gathered in issue 30's table: within 2.5 hours of thaw (not "
        "re-checked against the current label here)",
    ),
)


def thaw_limit_bound(label_thaw_minutes: float | None) -> float:
    """The longest thaw-to-infusion limit a product's owner may set, in minutes: the label's,
    or the general 30 minutes where the label's value is not confirmed."""
    if label_thaw_minutes is None:
        return DEFAULT_THAW_LIMIT_MINUTES
    return label_thaw_minutes


def check_thaw_limit(seconds: float, label_thaw_minutes: float | None) -> None:
    high = thaw_limit_bound(label_thaw_minutes)
    if not (math.isfinite(seconds) and MIN_THAW_LIMIT_MINUTES * 60 <= seconds <= high * 60):
        source = "the label's" if label_thaw_minutes is not None else "the general rule's"
        raise InvalidRequest(
            f"the thaw-to-infusion limit is between {MIN_THAW_LIMIT_MINUTES:g} and {high:g} "
            f"minutes ({source} limit for this product)"
        )


def check_owner(
    *, product: str, owner: str | None, role: Role, site: str, site_is_owner: bool
) -> None:
    """Only QA of the product's owning manufacturing site changes its safety settings."""
    if owner is None:
        raise Forbidden(
            f"product {product} has no owning manufacturing site yet, so nobody may change its "
            "settings: the installation's operator names it when setting the product up; ask "
            "them"
        )
    if role is not SETTINGS_ROLE or not site_is_owner:
        raise Forbidden(
            f"{product}'s settings belong to its owning manufacturing site {owner}: only QA of "
            f"{owner} changes them (you act as {role.value} of {site})"
        )


def check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise InvalidRequest("a change of a product's settings needs its reason")
    if len(text) > 500:
        raise InvalidRequest("the reason has at most 500 characters")
    return text


# The product profile: the scheduling facts of a product, versioned with its other settings and
# changed the same way (QA of the owning site, signed, with a reason). Days are whole days.
# A value nobody confirmed stays None, and its source says so; planning then uses the
# product's turnaround policy (services.domain.plans.facts) and says it assumed.

PROFILE_DAYS = (
    "manufacturing_days",  # manufacturing and QC, start to QA release: the target ...
    "manufacturing_days_min",  # ... and its typical range
    "manufacturing_days_max",
    "collection_to_pickup_days",  # transit lead time per leg
    "outbound_transit_days",
    "release_to_ship_days",
    "return_transit_days",
    "ld_days",  # the lymphodepletion regimen's length (its first to its last day)
    "ld_to_infusion_min_days",  # the infusion window, in days after LD ends
    "ld_to_infusion_max_days",
    "repeat_ld_after_days",  # infusion this many days late: repeat LD
)
PROFILE_FIELDS = (*PROFILE_DAYS, "release_before_ld", "monitoring")
MAX_PROFILE_DAYS = 120
# post-infusion periods a label names (per jurisdiction of the treatment site)
MONITORING_PERIODS = ("monitoring", "stay_near_centre", "no_driving")


@dataclass(frozen=True, slots=True)
class ProfileSeed:
    product: str
    values: dict[str, object]
    sources: dict[str, str]


_UNCONFIRMED = (
    "not confirmed against the current label: empty until the owning site's QA sets it "
    "(planning uses the turnaround policy's typical time meanwhile)"
)
_US_2025 = (
    "US labels since June 2025 (issue 30): monitoring for at least 2 weeks, staying near the "
    "treatment centre for 2 weeks, no driving for 2 weeks (REMS removed); other jurisdictions "
    "unconfirmed"
)
_US_MONITORING = {"US": {"monitoring": 14, "stay_near_centre": 14, "no_driving": 14}}


def _profile(
    product: str, window: tuple[int, int], window_source: str, **more: object
) -> ProfileSeed:
    sources = {
        name: _UNCONFIRMED
        for name in PROFILE_DAYS
        if name not in ("ld_to_infusion_min_days", "ld_to_infusion_max_days")
    }
    sources["ld_to_infusion_min_days"] = sources["ld_to_infusion_max_days"] = window_source
    sources["release_before_ld"] = (
        "issue 30's table: the product is confirmed (released) before lymphodepletion"
    )
    sources["monitoring"] = _US_2025
    values: dict[str, object] = {
        "ld_to_infusion_min_days": window[0],
        "ld_to_infusion_max_days": window[1],
        "release_before_ld": True,
        "monitoring": _US_MONITORING,
    }
    for name, given in more.items():
        pair: tuple[object, str] = given  # type: ignore[assignment]
        values[name] = pair[0]
        sources[name] = pair[1]
    return ProfileSeed(product, values, sources)


# From issue 30's table; check each value against the current label before relying on it.
PROFILE_SEED: tuple[ProfileSeed, ...] = (
    _profile(
        "tisa-cel",
        (2, 6),
        "Kymriah label as gathered in issue 30: ALL 2-14 d, DLBCL 2-11 d, FL 2-6 d after LD "
        "ends; the order names no indication, so the narrowest (2-6 d) applies until QA widens "
        "it for a site's indication",
    ),
    _profile(
        "axi-cel",
        (3, 3),
        "Yescarta label as gathered in issue 30: LD on days -5, -4 and -3, infusion on day 0, "
        "so 3 days after LD ends",
        ld_days=(3, "Yescarta label as gathered in issue 30: LD on days -5, -4, -3 (3 days)"),
    ),
    _profile(
        "brexu-cel",
        (3, 3),
        "Tecartus label as gathered in issue 30: LD on days -5, -4 and -3, infusion on day 0, "
        "so 3 days after LD ends",
        ld_days=(3, "Tecartus label as gathered in issue 30: LD on days -5, -4, -3 (3 days)"),
    ),
    _profile(
        "liso-cel",
        (2, 7),
        "Breyanzi label as gathered in issue 30: infusion 2-7 days after LD",
    ),
    _profile(
        "ide-cel",
        (2, 7),
        "Abecma label as gathered in issue 30: infusion 2 days after LD, delayed up to 7 days "
        "(read as no later than day 7; unconfirmed reading)",
    ),
    _profile(
        "cilta-cel",
        (2, 4),
        "Carvykti label as gathered in issue 30: infusion 2-4 days after LD",
        repeat_ld_after_days=(
            14,
            "Carvykti label as gathered in issue 30: repeat LD if infusion is more than 14 "
            "days late",
        ),
    ),
)


def check_profile(values: dict[str, object]) -> dict[str, object]:
    """A profile's values within bounds: whole days 0..120 (or None), a window whose end is
    not before its start, a range around the target, monitoring periods per jurisdiction."""
    checked: dict[str, object] = {}
    for name in PROFILE_DAYS:
        value = values.get(name)
        if value is None:
            checked[name] = None
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)  # NaN and infinities are no number of days
            or value != int(value)
        ):
            raise InvalidRequest(f"{name} is a whole number of days")
        if not 0 <= value <= MAX_PROFILE_DAYS:
            raise InvalidRequest(f"{name} is between 0 and {MAX_PROFILE_DAYS} days")
        checked[name] = int(value)
    low, high = checked["ld_to_infusion_min_days"], checked["ld_to_infusion_max_days"]
    if (low is None) != (high is None):
        raise InvalidRequest("the infusion window needs both its first and its last day")
    if low is not None and high is not None and low > high:  # type: ignore[operator]
        raise InvalidRequest("the infusion window's first day is after its last")
    if checked["ld_days"] == 0:
        raise InvalidRequest("ld_days is at least 1")
    if checked["repeat_ld_after_days"] == 0:
        raise InvalidRequest("repeat_ld_after_days is at least 1")
    low_mfg, high_mfg = checked["manufacturing_days_min"], checked["manufacturing_days_max"]
    if low_mfg is not None and high_mfg is not None and low_mfg > high_mfg:  # type: ignore[operator]
        raise InvalidRequest("manufacturing_days_min is after manufacturing_days_max")
    target = checked["manufacturing_days"]
    for bound, wrong in (("manufacturing_days_min", 1), ("manufacturing_days_max", -1)):
        edge = checked[bound]
        if edge is not None and target is not None and (edge - target) * wrong > 0:  # type: ignore[operator]
            raise InvalidRequest(f"{bound} lies on the wrong side of manufacturing_days")
    release_first = values.get("release_before_ld", True)
    if not isinstance(release_first, bool):
        raise InvalidRequest("release_before_ld is true or false")
    checked["release_before_ld"] = release_first
    monitoring = values.get("monitoring") or {}
    if not isinstance(monitoring, dict):
        raise InvalidRequest("monitoring is {jurisdiction: {period: days}}")
    periods: dict[str, dict[str, int]] = {}
    for place, named in monitoring.items():
        code = str(place).strip().upper()
        if not (1 <= len(code) <= 8 and code.replace("-", "").isalnum()):
            raise InvalidRequest(f"{place!r} is not a jurisdiction code (e.g. US, GB, EU)")
        if not isinstance(named, dict):
            raise InvalidRequest("monitoring is {jurisdiction: {period: days}}")
        if code in periods:
            raise InvalidRequest(f"{code} is given twice in monitoring (codes ignore case)")
        periods[code] = {}
        for period, days in named.items():
            if period not in MONITORING_PERIODS:
                raise InvalidRequest(
                    f"{period!r} is not a monitoring period ({', '.join(MONITORING_PERIODS)})"
                )
            if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= 365:
                raise InvalidRequest(f"{place} {period}: whole days, 1 to 365")
            periods[code][period] = days
    checked["monitoring"] = periods
    return checked
