"""The rules of services/operations/access.py and their neighbours, each shown where it could be
broken: policy bounds and who may change them, no patient-reference oracle, unattributed
refusals, the clocks of batch steps and of the bedside, real client addresses behind a proxy."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import time_machine
from sqlmodel import col, select

from services.db import UnitOfWork
from services.db.models import Notification, RefusedScan
from services.domain.custody import Role
from services.operations import admin
from tests.integration.test_vein_to_vein import _thawed_product, bc, status
from tests.world import World, csrf_token


@pytest.mark.parametrize(
    "body",
    [
        {"limits_hours": {"collection_to_pickup": 1e8}},
        {"limits_hours": {"collection_to_pickup": 0.5}},
        {"limits_hours": {"pickup_to_delivery": 24 * 91}},
        {"limits_hours": {"thaw_to_infusion": 5}},
        {"typical_hours": {"pickup_to_delivery": 1e9}},
        {"escalate_after_hours": 24 * 365},
        {"target_days": 10_000},
        {"at_risk": 1.0},
    ],
)
def test_policy_values_are_bounded(world: World, body: dict[str, Any]) -> None:
    signed = {"reason": "bounds", "signature": world.signature("qa")}
    response = world.post("qa", "/api/v1/sla-policies/axi-cel", {**body, **signed})
    assert response.status_code == 422, response.json
    assert world.get("care", "/api/v1/sla-policies/axi-cel").json["version"] == 0


def test_a_non_number_is_no_policy_value(world: World) -> None:
    body = '{"limits_hours": {"collection_to_pickup": NaN}, "target_days": Infinity}'
    response = world.client.post(
        "/api/v1/sla-policies/axi-cel",
        data=body,
        content_type="application/json",
        headers=world.headers("qa"),
    )
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"


def test_who_may_change_a_products_policy(world: World) -> None:
    """QA of the product's owning manufacturing site alone (MFG-1 owns axi-cel): not an admin,
    not QA of a treatment site or of another plant, whatever they sign with."""
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        admin.add_user(uow.session, email="qa_trt@example.org", role=Role.QA, site_code="TRT-1")
        _row, token = admin.create_token(uow.session, email="qa_trt@example.org")
        uow.commit()
    world.tokens["qa_trt"] = token
    body = {"limits_hours": {"pickup_to_delivery": 36}, "reason": "renegotiated"}
    for who, expected in (
        ("qa_trt", 403),
        ("care", 403),
        ("op", 403),
        ("admin", 403),
        ("qa2", 403),
        ("qa", 201),
    ):
        signed = {**body, "signature": world.signature(who)}
        response = world.post(who, "/api/v1/sla-policies/axi-cel", signed)
        assert response.status_code == expected, (who, response.json)
    assert world.get("care", "/api/v1/sla-policies/axi-cel").json["version"] == 1


def test_a_wrong_and_a_right_patient_reference_get_the_same_answer_without_authority(
    world: World,
) -> None:
    """Manufacturing and couriers see the order but not its patient: what they type at a
    bedside scan must not tell them whether it is the patient."""
    din = _thawed_product(world, "PAT-SECRET")
    for who, site in (("op", "MFG-1"), ("courier", "TRT-1"), ("aph", "APH-1")):
        answers = []
        for patient in ("PAT-SECRET", "PAT-GUESS"):
            response = world.scan(who, bc(din), "infuse", site, patient_ref=patient)
            body = response.json
            answers.append((response.status_code, body["code"], body["detail"]))
        assert answers[0] == answers[1], (who, answers)
        assert answers[0][1] != "coi_mismatch"
    # the care team of the order's bedside is told, of course
    refused = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-GUESS")
    assert refused.json["code"] == "coi_mismatch"


def test_a_refused_scan_of_a_bag_the_scanner_cannot_see_is_unattributed_and_told_no_one(
    world: World,
) -> None:
    bag = world.bag_at("collected", "PAT-UNSEEN")
    world.post(
        "care",
        "/api/v1/subscriptions",
        {"coi": bag["coi"], "channel": "email", "target": "nurse@example.org"},
    )
    response = world.scan("aph2", bag["barcode"], "verify_label", "APH-2")
    assert response.status_code == 404
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        (refusal,) = uow.session.exec(select(RefusedScan)).all()
        told = uow.session.exec(
            select(Notification).where(col(Notification.kind) == "refused_scan")
        ).all()
    assert (refusal.order_id, refusal.unit_id, refusal.code) == (None, None, "not_found")
    assert refusal.barcode == bag["barcode"]  # on record for QA all the same
    assert told == []
    refusals = world.get("care", f"/api/v1/orders/{bag['coi']}").json["refusals"]
    assert refusals == []


def test_batch_steps_are_checked_against_the_clock(world: World) -> None:
    bag = world.bag_at("receive", "PAT-CLOCK")
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    opened = world.post("op", "/api/v1/batches", {"coi": bag["coi"], "occurred_at": ahead})
    assert opened.status_code == 422
    assert "ahead of the server clock" in opened.json["detail"]
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    later = status(world, "op", code, "transduction", occurred_at=ahead)
    assert later.status_code == 422
    earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    before = status(world, "op", code, "transduction", occurred_at=earlier)
    assert before.status_code == 422
    assert "before the batch's last step" in before.json["detail"]
    assert status(world, "op", code, "transduction").status_code == 200


def test_an_infusion_dated_back_does_not_pass_an_expired_thaw(world: World) -> None:
    din = _thawed_product(world, "PAT-LATE")
    thawed = dt.datetime.now(dt.UTC)
    with time_machine.travel(thawed + dt.timedelta(minutes=45), tick=False):
        backdated = (thawed + dt.timedelta(minutes=5)).isoformat()
        refused = world.scan(
            "care", bc(din), "infuse", "TRT-1", patient_ref="PAT-LATE", occurred_at=backdated
        )
    assert refused.status_code == 422
    assert refused.json["code"] == "thaw_expired"


def test_a_thaw_dated_forward_buys_no_time(world: World) -> None:
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)).isoformat()
    din = _thawed_product(world, "PAT-FWD", occurred_at=ahead)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=32), tick=False):
        refused = world.scan("care", bc(din), "infuse", "TRT-1", patient_ref="PAT-FWD")
    assert refused.json["code"] == "thaw_expired"


def _login_attempts(app: Any, forwarded_for: list[str]) -> list[int]:
    client = app.test_client()
    statuses = []
    for address in forwarded_for:
        token = csrf_token(client)
        response = client.post(
            "/login",
            data={"email": "nobody@example.org", "password": "wrong", "csrf_token": token},
            headers={"X-Forwarded-For": address},
        )
        statuses.append(response.status_code)
    return statuses


def test_behind_a_trusted_proxy_rate_limits_key_on_the_real_client(app_factory: Any) -> None:
    limit = {"login_rate_limit": "2 per minute"}
    direct = app_factory(**limit)
    World.build(direct)
    # no proxy trusted: X-Forwarded-For is anyone's to write, so it is ignored
    assert _login_attempts(direct, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [401, 401, 429]
    behind = app_factory(trusted_proxies=1, **limit)
    assert _login_attempts(behind, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [401, 401, 401]
    assert _login_attempts(behind, ["10.0.0.9", "10.0.0.9", "10.0.0.9"]) == [401, 401, 429]


def test_a_scan_kept_offline_by_another_user_is_never_sent_under_this_login(world: World) -> None:
    bag = world.bag_at("collected", "PAT-QUEUE")
    aph = world.browser("aph")
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        other = admin.user_by_email(uow.session, "aph@example.org").id
    token = csrf_token(aph, "/scan")
    response = aph.post(
        "/scan",
        data={
            "barcode": bag["barcode"],
            "action": "verify_label",
            "site": "APH-1",
            "scanned_by": str((other or 0) + 1000),
            "csrf_token": token,
        },
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 409
    assert json.loads(response.get_data())["code"] == "scanned_by_another_user"
    assert world.get("aph", f"/api/v1/units/{bag['din']}").json["state"] == "collected"
