"""A manufacturing batch: the steps an order's cells go through, QC, and QA's disposition.

A batch is opened from an order's received apheresis bags at the order's manufacturing site and
moves one step at a time; QA releases it after QC testing or fails it, with a reason, at any
point before. Product bags are filled from formulation on and released with their batch.
"""

from __future__ import annotations

from enum import StrEnum

from services.domain.custody import Role
from services.domain.errors import Forbidden, IllegalTransition, InvalidRequest


class BatchState(StrEnum):
    ACTIVATION = "activation"  # opened: the apheresis material is consumed, T cells activated
    TRANSDUCTION = "transduction"
    EXPANSION = "expansion"
    HARVEST = "harvest"
    FORMULATION = "formulation"
    CRYOPRESERVATION = "cryopreservation"
    QC_TESTING = "qc_testing"
    RELEASED = "released"  # QA released it: its product bags may leave
    FAILED = "failed"  # QA or the operator failed it, with a reason; a new collection may follow


STEPS: tuple[BatchState, ...] = (
    BatchState.ACTIVATION,
    BatchState.TRANSDUCTION,
    BatchState.EXPANSION,
    BatchState.HARVEST,
    BatchState.FORMULATION,
    BatchState.CRYOPRESERVATION,
    BatchState.QC_TESTING,
)
FINAL = frozenset({BatchState.RELEASED, BatchState.FAILED})
# product bags are filled from formulation on, and registered up to QA's release (a bag
# forgotten at formulation can still be registered during QC testing)
FILLING = frozenset({BatchState.FORMULATION, BatchState.CRYOPRESERVATION, BatchState.QC_TESTING})
# a batch leaves these steps only with product bags: without any, release would be refused
# and nothing could be registered after it (a dead end but for failing it)
NEEDS_PRODUCTS = frozenset({BatchState.FORMULATION, BatchState.CRYOPRESERVATION})
OPENING_ROLES = frozenset({Role.MANUFACTURING_OPERATOR})
STEP_ROLES = frozenset({Role.MANUFACTURING_OPERATOR})
FAIL_ROLES = frozenset({Role.MANUFACTURING_OPERATOR, Role.QA})
RELEASE_ROLES = frozenset({Role.QA})
MAX_PRODUCTS = 10


def check_status_change(
    current: BatchState, target: BatchState, *, role: Role, reason: str | None, products: int
) -> None:
    """Refuse a status change out of sequence, by the wrong role, or without what it needs."""
    if current in FINAL:
        raise IllegalTransition(
            f"the batch is {current.value} already; its record can only be corrected",
            state=current.value,
            action=target.value,
        )
    if target is BatchState.FAILED:
        if role not in FAIL_ROLES:
            raise Forbidden(f"a user with role {role.value} may not fail a batch")
        if not reason or not reason.strip():
            raise InvalidRequest("failing a batch needs a reason")
        return
    if target is BatchState.RELEASED:
        if role not in RELEASE_ROLES:
            raise Forbidden("only QA releases a batch")
        if current is not BatchState.QC_TESTING:
            raise IllegalTransition(
                f"a batch is released after QC testing, not from {current.value}",
                state=current.value,
                action=target.value,
            )
        if products == 0:
            raise IllegalTransition(
                "the batch has no product bags to release: the operators register them first "
                "(Register product bags, on the batch's page)",
                state=current.value,
                action=target.value,
            )
        return
    if role not in STEP_ROLES:
        raise Forbidden(f"a user with role {role.value} may not move a batch to {target.value}")
    expected = next_step(current)
    if target is expected and current in NEEDS_PRODUCTS and products == 0:
        raise IllegalTransition(
            f"register the batch's product bags before it leaves {current.value}: a batch "
            "without product bags cannot be released",
            state=current.value,
            action=target.value,
        )
    if target is not expected:
        raise IllegalTransition(
            f"the batch is at {current.value}; its next step is "
            f"{expected.value if expected else 'QA release'}, not {target.value}",
            state=current.value,
            action=target.value,
        )


def next_step(current: BatchState) -> BatchState | None:
    if current not in STEPS:
        return None
    index = STEPS.index(current)
    return STEPS[index + 1] if index + 1 < len(STEPS) else None


def check_filling(current: BatchState, *, role: Role, existing: int, adding: int) -> None:
    if role not in STEP_ROLES:
        raise Forbidden("product bags are registered by manufacturing operators")
    if current not in FILLING:
        raise IllegalTransition(
            "product bags are registered from formulation until QA's release; the batch is "
            f"{current.value.replace('_', ' ')}",
            state=current.value,
            action="produce",
        )
    if adding < 1 or existing + adding > MAX_PRODUCTS:
        raise InvalidRequest(f"a batch has 1 to {MAX_PRODUCTS} product bags")
