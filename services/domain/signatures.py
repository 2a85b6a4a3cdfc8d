"""Electronic signatures (21 CFR 11.50, 11.70, 11.200): which steps a site signs, who signs them,
with which meaning, and when a step counts as signed.

- A site names its **critical steps** (defaults: receipt and QA release at a manufacturing site,
  infusion at a treatment site; a QA disposition of a held bag everywhere), each with or without
  a **witness**. The step is signed **in the act**: the request that performs it carries the
  performer's password (and the witness's e-mail and password), or the act is refused.
- What a step needed is fixed when it is recorded (the event's ``signing``): a rule added later
  does not make an earlier, complete step look unsigned.
- The first signature is the performer's own, meaning what they did (``performed``; a QA release
  or disposition is ``approved``, and only QA approves). A witness is a second person of the same
  site, signing ``witness``. Nobody signs one step twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.domain.batches import BatchState
from services.domain.custody import BATCH_STATUS, DISPOSITIONS, Action, Role, SiteKind
from services.domain.errors import Conflict, Forbidden, InvalidRequest, SignatureRequired

PERFORMED, VERIFIED, APPROVED, WITNESS = "performed", "verified", "approved", "witness"
MEANINGS = (PERFORMED, VERIFIED, APPROVED, WITNESS)
APPROVING_ROLES = frozenset({Role.QA})
# what a step's first signature may mean; a step not named here: performed, verified, approved
STEP_MEANINGS: dict[str, tuple[str, ...]] = {"release": (APPROVED,), "disposition": (APPROVED,)}
DEFAULT_MEANINGS = (PERFORMED, VERIFIED, APPROVED)

DISPOSITION = "disposition"
# the critical steps when a site has configured none: step -> witness required
DEFAULT_STEPS: Mapping[SiteKind, Mapping[str, bool]] = {
    SiteKind.MANUFACTURING: {"receive": False, "release": False},
    SiteKind.TREATMENT: {"infuse": False},
}
ALWAYS_SIGNED: Mapping[str, bool] = {DISPOSITION: False}
"""Steps signed at every site, whatever it configures: QA's disposition of a held bag."""

# what an event records of its step's need when it is recorded (CustodyEvent.signing); an
# event recorded before this was kept has none, and is judged by the site's rules as they are
NOT_REQUIRED, SIGNED, WITNESSED = "none", "signed", "witnessed"
SIGNING = (NOT_REQUIRED, SIGNED, WITNESSED)


SIGNABLE_STEPS = frozenset(
    {action.value for action in Action if action is not Action.START_MANUFACTURING} | {DISPOSITION}
)
"""The steps a site may sign: those done in one act that can carry its signatures (a scan, a
QA release of a batch, a disposition). A batch's start is part of opening it, not a scan."""


def check_step(step: str) -> str:
    if step not in SIGNABLE_STEPS:
        raise InvalidRequest(
            f"{step!r} is not a step a site signs; the steps are "
            + ", ".join(sorted(SIGNABLE_STEPS))
        )
    return step


def meanings_for(step: str) -> tuple[str, ...]:
    return STEP_MEANINGS.get(step, DEFAULT_MEANINGS)


def step_of(action: str, batch_state: str | None) -> str:
    """The step an event records, as sites name their critical steps (a QA release is one)."""
    if action == BATCH_STATUS and batch_state == BatchState.RELEASED.value:
        return "release"
    if action in DISPOSITIONS:
        return DISPOSITION
    return action


def site_steps(kind: SiteKind, configured: Mapping[str, bool] | None) -> dict[str, bool]:
    """A site's critical steps: what it configured (``None``: nothing yet, so the defaults of
    its kind), and the steps every site signs."""
    steps = dict(DEFAULT_STEPS.get(kind, {})) if configured is None else dict(configured)
    return {**ALWAYS_SIGNED, **steps}


def requirement(steps: Mapping[str, bool], step: str) -> str:
    """What ``step`` needs at a site with ``steps``: none, a signature, or one and a witness."""
    if step not in steps:
        return NOT_REQUIRED
    return WITNESSED if steps[step] else SIGNED


def first_meaning(step: str) -> str:
    """The meaning of the performer's signature given in the act."""
    return meanings_for(step)[0]


def check_in_act(*, step: str, signing: str, role: Role, signed: bool, witnessed: bool) -> None:
    """Refuse an act whose site requires signatures it does not carry (``signed``: the
    performer's password came with it; ``witnessed``: a witness's e-mail and password did)."""
    if signing == NOT_REQUIRED:
        return
    what = step.replace("_", " ")
    if not signed:
        raise SignatureRequired(
            f"{what} is signed at this site in the act: send your password with it "
            '("signature": {"password": ...})'
        )
    if signing == WITNESSED and not witnessed:
        raise SignatureRequired(
            f"{what} is witnessed at this site: a second person of the site confirms it in the "
            'same request ("witness": {"email": ..., "password": ...})'
        )
    if first_meaning(step) == APPROVED and role not in APPROVING_ROLES:
        raise Forbidden("only QA signs an approval")


def check_signature(
    *,
    step: str,
    meaning: str,
    role: Role,
    signer_id: int,
    actor_id: int,
    existing: Sequence[tuple[int, str]],
    witness_required: bool,
) -> None:
    """Refuse a signature given after the act (for a step recorded before signatures came with
    the act) that the rules do not allow. ``existing``: (signer, meaning) of the signatures the
    step has already; ``actor_id``: who performed the step."""
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
        if signer_id == actor_id:
            raise Forbidden("a witness is a second person, not the one who performed the step")
        return
    if primary:
        more = (
            "; a second person signs as its witness" if witness_required and not witnessed else ""
        )
        raise Conflict(f"this step is signed{more}")
    if signer_id != actor_id:
        raise Forbidden(
            "a step is signed as performed, verified or approved by the person who recorded it; "
            "anyone else signs only as its witness"
        )
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


def required_by(signing: str) -> bool | None:
    """An event's recorded ``signing`` as ``status`` takes it."""
    if signing == NOT_REQUIRED:
        return None
    return signing == WITNESSED


def correction_meaning(role: Role) -> str:
    """What the signature on a correction means: its author QA approves it; an admin signs
    that they made it."""
    return APPROVED if role in APPROVING_ROLES else PERFORMED
