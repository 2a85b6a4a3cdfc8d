"""Who may sign a critical step, and with which meaning (21 CFR 11.50: each signature states
what it means).

A step is signed first by someone of the site where it happened, with the meaning of what they
did; a QA release is an approval, and only QA approves. Where the site requires a witness, a
second person of that site signs after them with the meaning ``witness``. Nobody signs one step
twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.domain.custody import Role
from services.domain.errors import Conflict, Forbidden, InvalidRequest

PERFORMED, VERIFIED, APPROVED, WITNESS = "performed", "verified", "approved", "witness"
MEANINGS = (PERFORMED, VERIFIED, APPROVED, WITNESS)
APPROVING_ROLES = frozenset({Role.QA})
# what a step's first signature may mean; a step not named here: performed, verified, approved
STEP_MEANINGS: dict[str, tuple[str, ...]] = {"release": (APPROVED,), "disposition": (APPROVED,)}
DEFAULT_MEANINGS = (PERFORMED, VERIFIED, APPROVED)


def meanings_for(step: str) -> tuple[str, ...]:
    return STEP_MEANINGS.get(step, DEFAULT_MEANINGS)


def check_signature(
    *,
    step: str,
    meaning: str,
    role: Role,
    signer_id: int,
    existing: Sequence[tuple[int, str]],
    witness_required: bool,
) -> None:
    """Refuse a signature the rules do not allow. ``existing``: (signer, meaning) of the
    signatures the step has already."""
    if meaning not in MEANINGS:
        raise InvalidRequest(f"a signature means one of {', '.join(MEANINGS)}")
    if any(signer == signer_id for signer, _ in existing):
        raise Conflict("you have signed this step already; a witness must be someone else")
    primary = [m for _, m in existing if m != WITNESS]
    witnessed = any(m == WITNESS for _, m in existing)
    if meaning == WITNESS:
        if not witness_required:
            raise InvalidRequest(f"{step} needs no witness at this site")
        if not primary:
            raise InvalidRequest("a witness signs after the person who performed the step")
        if witnessed:
            raise Conflict("this step is witnessed already")
        return
    if primary:
        more = (
            "; a second person signs as its witness" if witness_required and not witnessed else ""
        )
        raise Conflict(f"this step is signed{more}")
    allowed = meanings_for(step)
    if meaning not in allowed:
        raise InvalidRequest(f"{step} is signed with the meaning {' or '.join(allowed)}")
    if meaning == APPROVED and role not in APPROVING_ROLES:
        raise Forbidden("only QA signs an approval")


def status(meanings: Sequence[str], *, required: bool | None) -> str:
    """``required``: None when the step needs no signature, else whether it needs a witness."""
    if required is None:
        return "signed" if meanings else "not_required"
    if not [m for m in meanings if m != WITNESS]:
        return "awaiting"
    if required and WITNESS not in meanings:
        return "awaiting_witness"
    return "signed"


def correction_meaning(role: Role) -> str:
    """What the signature on a correction means: its author QA approves it; an admin signs
    that they made it."""
    return APPROVED if role in APPROVING_ROLES else PERFORMED
