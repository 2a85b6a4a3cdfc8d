"""Who may sign which meaning: the rule, enumerated."""

from __future__ import annotations

import pytest

from services.domain.custody import Role, SiteKind
from services.domain.errors import Conflict, Forbidden, InvalidRequest, SignatureRequired
from services.domain.signatures import (
    NOT_REQUIRED,
    SIGNED,
    WITNESSED,
    check_in_act,
    check_signature,
    check_step,
    requirement,
    site_steps,
    status,
)


def sign(
    meaning: str,
    *,
    step: str = "receive",
    role: Role = Role.MANUFACTURING_OPERATOR,
    signer: int = 1,
    actor: int = 1,
    existing: tuple[tuple[int, str], ...] = (),
    witness: bool = False,
) -> None:
    check_signature(
        step=step,
        meaning=meaning,
        role=role,
        signer_id=signer,
        actor_id=actor,
        existing=list(existing),
        witness_required=witness,
    )


def test_only_the_person_who_recorded_a_step_signs_it_as_what_they_did() -> None:
    with pytest.raises(Forbidden, match="recorded it"):
        sign("performed", signer=2, actor=1)
    with pytest.raises(Forbidden, match="recorded it"):
        sign("approved", signer=2, actor=1, step="release", role=Role.QA)
    sign("performed", signer=1, actor=1)


def test_what_a_step_needs_comes_from_the_sites_rules_or_its_kinds_defaults() -> None:
    manufacturing = site_steps(SiteKind.MANUFACTURING, None)
    assert requirement(manufacturing, "receive") == SIGNED
    assert requirement(manufacturing, "release") == SIGNED
    assert requirement(manufacturing, "pack") == NOT_REQUIRED
    assert requirement(site_steps(SiteKind.TREATMENT, None), "infuse") == SIGNED
    configured = site_steps(SiteKind.TREATMENT, {"infuse": True})
    assert requirement(configured, "infuse") == WITNESSED
    assert requirement(site_steps(SiteKind.TREATMENT, {}), "infuse") == NOT_REQUIRED
    # a disposition is signed everywhere, whatever the site configured
    assert requirement(site_steps(SiteKind.COLLECTION, {}), "disposition") == SIGNED


def test_an_act_carries_what_its_step_needs() -> None:
    check_in_act(
        step="pack", signing=NOT_REQUIRED, role=Role.APHERESIS_STAFF, signed=False, witnessed=False
    )
    with pytest.raises(SignatureRequired, match="password"):
        check_in_act(
            step="receive",
            signing=SIGNED,
            role=Role.MANUFACTURING_OPERATOR,
            signed=False,
            witnessed=False,
        )
    check_in_act(
        step="receive",
        signing=SIGNED,
        role=Role.MANUFACTURING_OPERATOR,
        signed=True,
        witnessed=False,
    )
    with pytest.raises(SignatureRequired, match="witness"):
        check_in_act(
            step="infuse", signing=WITNESSED, role=Role.CARE_TEAM, signed=True, witnessed=False
        )
    check_in_act(step="infuse", signing=WITNESSED, role=Role.CARE_TEAM, signed=True, witnessed=True)
    with pytest.raises(Forbidden, match="only QA"):
        check_in_act(
            step="release",
            signing=SIGNED,
            role=Role.MANUFACTURING_OPERATOR,
            signed=True,
            witnessed=False,
        )


def test_only_steps_done_in_one_act_can_be_signed() -> None:
    for step in ("receive", "infuse", "release", "disposition", "pickup"):
        assert check_step(step) == step
    for step in ("collect", "start_manufacturing", "produce", "anything"):
        with pytest.raises(InvalidRequest):
            check_step(step)


def test_a_step_is_signed_first_with_what_its_signer_did() -> None:
    sign("performed")
    sign("verified")
    sign("approved", role=Role.QA)
    with pytest.raises(Forbidden, match="only QA"):
        sign("approved")
    with pytest.raises(InvalidRequest):
        sign("blessed")


def test_a_qa_release_is_an_approval_by_qa() -> None:
    sign("approved", step="release", role=Role.QA)
    with pytest.raises(InvalidRequest, match="approved"):
        sign("performed", step="release", role=Role.QA)
    with pytest.raises(Forbidden):
        sign("approved", step="release", role=Role.MANUFACTURING_OPERATOR)


def test_a_witness_is_a_second_person_after_the_first_where_the_site_asks_for_one() -> None:
    with pytest.raises(InvalidRequest, match="after"):
        sign("witness", witness=True)
    with pytest.raises(InvalidRequest, match="no witness"):
        sign("witness", signer=2, existing=((1, "performed"),))
    sign("witness", signer=2, existing=((1, "performed"),), witness=True, role=Role.QA)
    with pytest.raises(Conflict, match="already"):
        sign("witness", signer=1, existing=((1, "performed"),), witness=True)
    with pytest.raises(Conflict, match="witnessed"):
        sign("witness", signer=3, existing=((1, "performed"), (2, "witness")), witness=True)
    with pytest.raises(Conflict, match="witness"):
        sign("verified", signer=2, existing=((1, "performed"),), witness=True)
    with pytest.raises(Conflict):
        sign("verified", signer=2, existing=((1, "performed"),))


@pytest.mark.parametrize(
    ("meanings", "required", "expected"),
    [
        ((), None, "not_required"),
        (("performed",), None, "signed"),
        ((), False, "awaiting"),
        (("performed",), False, "signed"),
        (("performed",), True, "awaiting_witness"),
        (("performed", "witness"), True, "signed"),
    ],
)
def test_status(meanings: tuple[str, ...], required: bool | None, expected: str) -> None:
    assert status(meanings, required=required) == expected
