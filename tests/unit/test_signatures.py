"""Who may sign which meaning: the rule, enumerated."""

from __future__ import annotations

import pytest

from services.domain.custody import Role
from services.domain.errors import Conflict, Forbidden, InvalidRequest
from services.domain.signatures import check_signature, status


def sign(
    meaning: str,
    *,
    step: str = "receive",
    role: Role = Role.MANUFACTURING_OPERATOR,
    signer: int = 1,
    existing: tuple[tuple[int, str], ...] = (),
    witness: bool = False,
) -> None:
    check_signature(
        step=step,
        meaning=meaning,
        role=role,
        signer_id=signer,
        existing=list(existing),
        witness_required=witness,
    )


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
