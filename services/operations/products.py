"""Products and their safety settings, in one place: the turnaround policy, the alarm rule,
the thaw-to-infusion limit and the scheduling profile (the vein-to-vein plan's facts) of a
product belong to its owning manufacturing site, and only QA of that site changes them, with a
reason and an e-signature given with the change, within clinical bounds
(services.domain.products). Every change is a new version (legs and imports already under way
keep theirs) and is in the admin log every site's admins read.

A product is set up by the installation (``vein2vein product add``, ``product owner``), which
names its owner; the known CAR-T products are seeded by the migrations without one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import AlarmRuleVersion, Product, ProductProfile, Site, SlaPolicy, User
from services.domain.condition import AlarmRule
from services.domain.custody import Actor, SiteKind
from services.domain.errors import Conflict, InvalidRequest, NotFound, SignatureRequired, WrongSite
from services.domain.products import (
    PROFILE_FIELDS,
    check_owner,
    check_profile,
    check_reason,
    check_thaw_limit,
)
from services.domain.sla import Leg, Policy
from services.operations import condition, deadlines, staff
from services.operations.admin import site_by_code
from services.operations.changelog import record_change
from services.operations.profiles import current_profile, profile_values
from services.operations.signing import Signers

PRODUCT_CODE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


@dataclass(frozen=True)
class ProductView:
    code: str
    name: str
    owner: str | None  # the owning manufacturing site's code
    label_thaw_minutes: float | None
    shelf_life_days: float | None
    source: str | None


def product_row(session: Session, code: str) -> Product:
    row = session.get(Product, code)
    if row is None:
        raise NotFound(f"no product {code!r}")
    return row


def products(session: Session) -> list[ProductView]:
    rows = session.exec(select(Product, Site.code).outerjoin(Site).order_by(col(Product.code)))
    return [
        ProductView(p.code, p.name, owner, p.label_thaw_minutes, p.shelf_life_days, p.source)
        for p, owner in rows.all()
    ]


def may_change(session: Session, actor: Actor, code: str) -> bool:
    """Whether the actor may change the product's settings (for the pages' forms)."""
    row = session.get(Product, code)
    return bool(
        row is not None
        and row.owner_site_id is not None
        and row.owner_site_id == actor.site_id
        and actor.role.value == "qa"
    )


def _check_change(session: Session, actor: Actor, code: str, signers: Signers) -> Product:
    row = product_row(session, code)
    owner = session.get(Site, row.owner_site_id) if row.owner_site_id else None
    check_owner(
        product=code,
        owner=owner.code if owner else None,
        role=actor.role,
        site=actor.site.code,
        site_is_owner=owner is not None and owner.id == actor.site_id,
    )
    if signers.performer is None or signers.performer.user_id != actor.user_id:
        raise SignatureRequired(
            f"a change of {code}'s settings is e-signed: send your password with it "
            '("signature": {"password": ...})'
        )
    return row


def _signed_by(session: Session, actor: Actor) -> str:
    user = session.get(User, actor.user_id)
    assert user is not None
    return user.name


def change_policy(
    session: Session,
    *,
    actor: Actor,
    product: str,
    limits: dict[str, float],
    at_risk: float | None,
    escalate_after: float | None,
    target_days: float | None,
    reason: str,
    signers: Signers,
    now: dt.datetime,
    typical: dict[str, float] | None = None,
) -> Policy:
    """A new version of the product's turnaround policy (the thaw-to-infusion limit among its
    legs), by QA of its owning site, signed, with a reason, within bounds."""
    row = _check_change(session, actor, product, signers)
    why = check_reason(reason)
    thaw = limits.get(Leg.THAW_TO_INFUSION.value)
    if thaw is not None:
        check_thaw_limit(thaw, row.label_thaw_minutes)
    before = deadlines.current_policy(session, product)
    after = deadlines.set_policy(
        session,
        actor=actor,
        product=product,
        limits=limits,
        at_risk=at_risk,
        escalate_after=escalate_after,
        target_days=target_days,
        typical=typical,
        signed=(why, _signed_by(session, actor), now),
    )
    record_change(
        session,
        actor=actor,
        action="turnaround policy changed",
        subject=product,
        before=staff.policy_record(before),
        after={**staff.policy_record(after), "reason": why, "signed_by": actor.email},
        now=now,
        every_site=True,
    )
    return after


def change_alarm_rule(
    session: Session,
    *,
    actor: Actor,
    product: str,
    reason: str,
    signers: Signers,
    now: dt.datetime,
    **values: float | None,
) -> AlarmRule:
    """A new version of the product's alarm rule, by QA of its owning site, signed, with a
    reason, within the clinical bounds (services.domain.condition.check_rule)."""
    _check_change(session, actor, product, signers)
    why = check_reason(reason)
    return condition.set_rule(
        session,
        actor=actor,
        product=product,
        now=now,
        signed=(why, _signed_by(session, actor), now),
        **values,
    )


# setting products up: the installation's operator, at the command line


def add_product(
    session: Session,
    *,
    code: str,
    name: str,
    owner: str | None,
    label_thaw_minutes: float | None,
    shelf_life_days: float | None,
    now: dt.datetime,
) -> Product:
    if not code or len(code) > 64 or not set(code) <= set(PRODUCT_CODE_CHARS):
        raise InvalidRequest(f"{code!r} is not a product code (letters, digits, '.', '_', '-')")
    if session.get(Product, code) is not None:
        raise Conflict(f"product {code} is set up already")
    if label_thaw_minutes is not None and not 5 <= label_thaw_minutes <= 24 * 60:
        raise InvalidRequest("the label's thaw limit is between 5 minutes and 24 hours")
    if shelf_life_days is not None and not 1 <= shelf_life_days <= 3650:
        raise InvalidRequest("the shelf life is between 1 and 3650 days")
    row = Product(
        code=code,
        name=name.strip() or code,
        owner_site_id=_owner_id(session, owner) if owner else None,
        label_thaw_minutes=label_thaw_minutes,
        shelf_life_days=shelf_life_days,
        source="set up at the command line",
        created_at=now,
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        actor=None,
        action="product set up",
        subject=code,
        after=_record(session, row),
        now=now,
        every_site=True,
    )
    return row


def set_owner(session: Session, *, code: str, owner: str, now: dt.datetime) -> Product:
    """Name the product's owning manufacturing site (the installation's operator)."""
    row = product_row(session, code)
    before = _record(session, row)
    row.owner_site_id = _owner_id(session, owner)
    session.add(row)
    session.flush()
    record_change(
        session,
        actor=None,
        action="product owner named",
        subject=code,
        before=before,
        after=_record(session, row),
        now=now,
        every_site=True,
    )
    return row


def _owner_id(session: Session, code: str) -> int:
    site = site_by_code(session, code)
    if site.kind is not SiteKind.MANUFACTURING:
        raise WrongSite(
            f"{site.code} is a {site.kind.value} site: a product is owned by a manufacturing site"
        )
    assert site.id is not None
    return site.id


def _record(session: Session, row: Product) -> dict[str, Any]:
    owner = session.get(Site, row.owner_site_id) if row.owner_site_id else None
    return {
        "name": row.name,
        "owner": owner.code if owner else None,
        "label_thaw_minutes": row.label_thaw_minutes,
        "shelf_life_days": row.shelf_life_days,
    }


def versions(session: Session, code: str) -> tuple[list[SlaPolicy], list[AlarmRuleVersion]]:
    """Every version of the product's policy and alarm rule, newest first, with who signed."""
    policies = session.exec(
        select(SlaPolicy).where(SlaPolicy.product == code).order_by(col(SlaPolicy.version).desc())
    ).all()
    rules = session.exec(
        select(AlarmRuleVersion)
        .where(AlarmRuleVersion.product == code)
        .order_by(col(AlarmRuleVersion.version).desc())
    ).all()
    return list(policies), list(rules)


# the product profile: the plan's facts (services.domain.products.PROFILE_FIELDS)


def profile_versions(session: Session, product: str) -> list[ProductProfile]:
    return list(
        session.exec(
            select(ProductProfile)
            .where(ProductProfile.product == product)
            .order_by(col(ProductProfile.version).desc())
        ).all()
    )


def change_profile(
    session: Session,
    *,
    actor: Actor,
    product: str,
    values: dict[str, Any],
    reason: str,
    signers: Signers,
    now: dt.datetime,
) -> ProductProfile:
    """A new version of the product's profile, by QA of its owning site, signed, with a
    reason: the values given replace the current ones (``None`` empties one), within
    bounds; each changed value's source names the change."""
    _check_change(session, actor, product, signers)
    why = check_reason(reason)
    unknown = sorted(set(values) - set(PROFILE_FIELDS))
    if unknown:
        raise InvalidRequest(f"not a profile value: {', '.join(unknown)}")
    before_row = current_profile(session, product)
    before = profile_values(before_row)
    merged = check_profile({**before, **values})
    signer = _signed_by(session, actor)
    sources = dict(before_row.sources) if before_row else {}
    for name in values:
        if merged.get(name) != before.get(name):
            sources[name] = f"set by {signer} ({actor.email}), {now.date().isoformat()}: {why}"
    row = ProductProfile(
        product=product,
        version=(before_row.version if before_row else 0) + 1,
        sources=sources,
        created_by_id=actor.user_id,
        created_at=now,
        reason=why,
        signer_name=signer,
        signed_at=now,
        **merged,  # type: ignore[arg-type]
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="product profile changed",
        subject=product,
        before=before or None,
        after={**merged, "version": row.version, "reason": why, "signed_by": actor.email},
        now=now,
        every_site=True,
    )
    return row
