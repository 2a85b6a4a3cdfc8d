"""API tokens: listed without their secret, revoked at once, refused once expired."""

from __future__ import annotations

import datetime as dt

import time_machine

from services.db import UnitOfWork
from services.operations import admin
from tests.world import World


def test_a_revoked_token_stops_working_at_once(world: World) -> None:
    listed = world.get("care", "/api/v1/tokens").json["tokens"]
    (mine,) = listed
    token = world.tokens["care"]
    assert mine["prefix"] == token[:12]
    assert token not in str(listed)
    assert world.get("care", "/api/v1/delays").status_code == 200
    revoked = world.client.delete(f"/api/v1/tokens/{mine['id']}", headers=world.headers("care"))
    assert revoked.status_code == 200
    assert revoked.json["revoked_at"] is not None
    after = world.get("care", "/api/v1/delays")
    assert after.status_code == 401
    assert after.json["code"] == "unauthorized"


def test_a_token_of_someone_else_cannot_be_revoked(world: World) -> None:
    (theirs,) = world.get("care", "/api/v1/tokens").json["tokens"]
    response = world.client.delete(f"/api/v1/tokens/{theirs['id']}", headers=world.headers("op"))
    assert response.status_code == 404
    assert world.get("care", "/api/v1/delays").status_code == 200


def test_an_expired_token_is_refused(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        _row, token = admin.create_token(
            uow.session,
            email="care@example.org",
            name="short",
            expires_at=now + dt.timedelta(days=1),
        )
        uow.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert world.client.get("/api/v1/delays", headers=headers).status_code == 200
    with time_machine.travel(now + dt.timedelta(days=1, seconds=1), tick=False):
        response = world.client.get("/api/v1/delays", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json["detail"]
