"""Reading a product's profile in force (the plan's facts). Changes are made in
services.operations.products, with the product's other settings; this read side stands apart
so that the scan path (an infusion's window) reads it without importing the settings'
write side."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from services.db.models import ProductProfile
from services.domain.products import PROFILE_FIELDS


def current_profile(session: Session, product: str) -> ProductProfile | None:
    """The product's profile in force (its newest version), or None: it has none."""
    return session.exec(
        select(ProductProfile)
        .where(ProductProfile.product == product)
        .order_by(col(ProductProfile.version).desc())
        .limit(1)
    ).first()


def profile_values(row: ProductProfile | None) -> dict[str, Any]:
    """A profile's values by name (empty: no profile)."""
    if row is None:
        return {}
    return {name: getattr(row, name) for name in PROFILE_FIELDS}
