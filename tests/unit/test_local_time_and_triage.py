"""The pure rules of issue 29: a moment on a site's wall clock across daylight-saving changes,
what each piece of news weighs and says, and what a role scans a bag for next."""

from __future__ import annotations

import datetime as dt

import pytest

from services.domain.custody import (
    TRANSITIONS,
    Action,
    Role,
    SiteKind,
    UnitKind,
    UnitState,
    likely_actions,
)
from services.domain.errors import DomainError, InvalidIdentifier, InvalidRequest
from services.domain.identifiers import parse_scan
from services.domain.local_time import check_zone, next_local_time, offset_text, wall_clock
from services.domain.notifications import DIGEST, EVENT_KINDS
from services.domain.triage import (
    MAYBE_CRITICAL_KINDS,
    REFUSAL_SEVERITY,
    Severity,
    advise,
    roles_for,
    severity,
)

UTC = dt.UTC


def T(*parts: int) -> dt.datetime:  # noqa: N802 - a moment in UTC, short for the tables
    return dt.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("moment", "zone", "shown"),
    [
        # London springs forward at 01:00 UTC on 29 March 2026 and falls back on 25 October
        (T(2026, 3, 29, 0, 59), "Europe/London", "2026-03-29 00:59 GMT (UTC)"),
        (T(2026, 3, 29, 1, 0), "Europe/London", "2026-03-29 02:00 BST (UTC+01:00)"),
        (T(2026, 10, 25, 0, 30), "Europe/London", "2026-10-25 01:30 BST (UTC+01:00)"),
        (T(2026, 10, 25, 1, 30), "Europe/London", "2026-10-25 01:30 GMT (UTC)"),
        # New York: 8 March and 1 November 2026
        (T(2026, 3, 8, 6, 59), "America/New_York", "2026-03-08 01:59 EST (UTC-05:00)"),
        (T(2026, 3, 8, 7, 0), "America/New_York", "2026-03-08 03:00 EDT (UTC-04:00)"),
        # a zone that names itself by its offset shows the offset once
        (T(2026, 6, 1, 12, 0), "America/Sao_Paulo", "2026-06-01 09:00 UTC-03:00"),
        (T(2026, 6, 1, 12, 0), "Asia/Kolkata", "2026-06-01 17:30 IST (UTC+05:30)"),
        (T(2026, 6, 1, 12, 0), "UTC", "2026-06-01 12:00 UTC"),
    ],
)  # fmt: skip
def test_a_moment_on_a_sites_clock(moment: dt.datetime, zone: str, shown: str) -> None:
    assert wall_clock(moment, zone) == shown


def test_an_offset_is_said_with_its_sign() -> None:
    west = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(-dt.timedelta(hours=3, minutes=30)))
    assert offset_text(west) == "UTC-03:30"
    assert offset_text(T(2026, 1, 1)) == "UTC"


def test_a_zone_is_an_iana_name() -> None:
    for good in ("UTC", "Europe/London", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        assert check_zone(good) == good
    for bad in ("", "Mars/Olympus", "../etc/passwd", "Europe/London; DROP", "x" * 70, "GMT+25"):
        with pytest.raises(InvalidRequest):
            check_zone(bad)


def test_the_next_hour_on_a_clock_across_a_change() -> None:
    # the night London springs forward, 07:00 BST is 06:00 UTC
    night = T(2026, 3, 28, 23, 0)
    assert next_local_time(night, "Europe/London", hour=7) == T(2026, 3, 29, 6, 0)
    # and the night before, 07:00 GMT is 07:00 UTC
    assert next_local_time(night - dt.timedelta(days=1), "Europe/London", hour=7) == T(
        2026, 3, 28, 7, 0
    )


def test_every_kind_of_news_has_a_severity_roles_and_words() -> None:
    for kind in (*EVENT_KINDS, DIGEST):
        payload = {
            "kind": kind,
            "coi": "CHA100126000001",
            "din": "A100126000001",
            "site": "TRT-1",
            "code": "illegal_transition",
            "due_at": "2026-03-29T01:30:00+00:00",
            "leg": "pickup_to_delivery",
            "missing": ["A100126000002"],
            "batch": "BAT-000001",
            "batch_status": "expansion",
            "count": 3,
        }
        advice = advise(payload, patient_ref="PAT-1")
        assert advice.severity is severity(kind, payload)
        assert advice.what
        assert advice.todo
        assert roles_for(kind), kind


@pytest.mark.parametrize(
    ("kind", "payload", "level"),
    [
        ("hold", {}, Severity.CRITICAL),
        ("quarantine", {}, Severity.CRITICAL),
        ("reject", {}, Severity.CRITICAL),
        ("reject_hold", {}, Severity.CRITICAL),
        ("destroy", {}, Severity.CRITICAL),
        ("report_lost", {}, Severity.CRITICAL),
        ("shipment_discrepancy", {}, Severity.CRITICAL),
        ("deadline_escalated", {}, Severity.CRITICAL),
        ("refused_scan", {"code": "coi_mismatch"}, Severity.CRITICAL),
        ("batch_status", {"batch_status": "failed"}, Severity.CRITICAL),
        ("deadline_at_risk", {}, Severity.WARNING),
        ("deadline_late", {}, Severity.WARNING),
        ("refused_scan", {"code": "wrong_site"}, Severity.WARNING),
        ("refused_scan", {"code": "illegal_transition"}, Severity.INFORMATION),
        ("batch_status", {"batch_status": "released"}, Severity.INFORMATION),
        ("pickup", {}, Severity.INFORMATION),
        ("infuse", {}, Severity.INFORMATION),
        ("checkpoint", {}, Severity.INFORMATION),
    ],
)
def test_what_each_kind_weighs(kind: str, payload: dict[str, str], level: Severity) -> None:
    assert severity(kind, payload) is level
    if level is Severity.CRITICAL:
        assert kind in MAYBE_CRITICAL_KINDS  # the pinned list looks at it


def test_every_refusal_code_has_a_severity() -> None:
    codes = {cls.code for cls in _subclasses(DomainError)} - {"domain_error"}
    scan_refusals = codes - {
        "conflict",
        "sequence_exhausted",
        "signature_refused",
        "signing_key_missing",
        "unknown_product",
        "invalid_readings",
        "invalid_epcis",
    }
    assert scan_refusals <= set(REFUSAL_SEVERITY), scan_refusals - set(REFUSAL_SEVERITY)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_the_patient_is_named_only_when_given() -> None:
    payload = {"kind": "hold", "coi": "CHA100126000001", "din": "A100126000001"}
    assert "patient PAT-9 (order CHA100126000001)" in advise(payload, patient_ref="PAT-9").todo
    blind = advise(payload)
    assert "PAT" not in blind.what + blind.todo
    assert "order CHA100126000001" in blind.todo


def test_a_deadline_reads_on_the_readers_clock() -> None:
    payload = {
        "kind": "deadline_late",
        "coi": "C",
        "din": "D",
        "site": "COUR-1",
        "leg": "pickup_to_delivery",
        "due_at": "2026-03-29T01:30:00+00:00",
    }
    advice = advise(payload, clock=lambda m: wall_clock(m, "Europe/London"))
    assert "due 2026-03-29 02:30 BST (UTC+01:00)" in advice.what


def test_the_likely_action_is_one_the_role_may_scan_there() -> None:
    for (kind, state, action), rule in TRANSITIONS.items():
        for site_kind, role in rule.performers:
            actions = likely_actions(kind, state, role=role, site_kind=site_kind)
            if rule.by_scan:
                assert action in actions
            first = actions[0] if actions else None
            if first is not None:
                chosen = TRANSITIONS[(kind, state, first)]
                assert (site_kind, role) in chosen.performers
                assert chosen.by_scan
    # the step forward before the exceptions
    assert (
        likely_actions(
            UnitKind.APHERESIS,
            UnitState.LABEL_VERIFIED,
            role=Role.APHERESIS_STAFF,
            site_kind=SiteKind.COLLECTION,
        )[0]
        is Action.CRYOPRESERVE
    )
    assert likely_actions(
        UnitKind.APHERESIS,
        UnitState.CRYOPRESERVED,
        role=Role.APHERESIS_STAFF,
        site_kind=SiteKind.COLLECTION,
    ) == [Action.PACK, Action.QUARANTINE]
    # nothing for a role that does not scan the bag there
    assert not likely_actions(
        UnitKind.PRODUCT, UnitState.STORED, role=Role.COURIER, site_kind=SiteKind.TREATMENT
    )


def test_words_are_not_a_misread_code() -> None:
    for words in ("hello world", "HELLO", "the bag", "ok"):
        with pytest.raises(InvalidIdentifier) as refused:
            parse_scan(words)
        assert "is not a code of ours" in refused.value.detail
        assert "lower-case" not in refused.value.detail
