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
