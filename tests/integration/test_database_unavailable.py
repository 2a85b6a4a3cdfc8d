"""A database that cannot be reached is a 503 to send again, never a 500; connections the
server dropped between requests are replaced without the caller noticing: pinged on checkout
when idle for a second, or found dead by the token lookup or the scan, which try once more.
(bench/scan_faults.py restarts PostgreSQL under load: nothing lost, nothing doubled.)"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from services.db import engine as engine_module
from services.web import create_app
from tests.conftest import _libpq_url, _settings
from tests.world import World


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_that_cannot_be_reached_answers_503_with_retry_after(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    app = create_app(_settings(url, tmp_path / "var"))
    client = app.test_client()
    scan = {"barcode": "=A99992612345600", "action": "verify_label", "site": "APH-1"}
    for method, path, body in (
        ("post", "/api/v1/scans", {**scan, "event_id": str(uuid.uuid4())}),
        ("get", "/api/v1/shippers", None),
    ):
        response = getattr(client, method)(
            path, json=body, headers={"Authorization": "Bearer v2v_whatever"}
        )
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
        assert response.json["code"] == "database_unavailable"
        assert "send it again" in response.json["detail"]
        assert response.headers["Retry-After"] == "1"
    app.extensions["vein2vein"].db.engine.dispose()


@pytest.mark.postgres
def end_every_connection(pg_url: str) -> None:
    """The server ends every connection to the database (as a restart or a failover does)."""
    with psycopg.connect(_libpq_url(pg_url), autocommit=True) as connection:
        ended = connection.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
        ).fetchone()
    assert ended is not None
    assert ended[0] >= 1


@pytest.mark.postgres
def test_connections_the_server_dropped_are_replaced_before_the_next_request(
    pg_app: Any, pg_url: str
) -> None:
    """Dropped a moment after their last use (no ping): the token lookup finds its connection
    dead and reads again on a new one; the pool has replaced the rest."""
    world = World.build(pg_app)
    first = world.bag_at("collected", "PAT-DROP-1")
    second = world.bag_at("collected", "PAT-DROP-2")
    assert world.scan("aph", first["barcode"], "verify_label", "APH-1").status_code == 201
    end_every_connection(pg_url)
    assert world.scan("aph", second["barcode"], "verify_label", "APH-1").status_code == 201


@pytest.mark.postgres
@pytest.mark.parametrize(("idle_for", "status"), [(0.0, 200), (3600.0, 503)])
def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced_on_checkout(
    pg_app: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch, idle_for: float, status: int
) -> None:
    """A page's reads do not try twice: a page is served after a drop only because the
    checkout's ping found the connection dead (with the threshold past reach it is a 503)."""
    world = World.build(pg_app)
    browser = world.browser("op")
    assert browser.get("/").status_code == 200
    monkeypatch.setattr(engine_module, "PING_IF_IDLE_SECONDS", idle_for)
    end_every_connection(pg_url)
    assert browser.get("/").status_code == status
    assert browser.get("/").status_code == 200  # the pool replaced every dropped connection


@pytest.mark.postgres
def test_a_scan_whose_connection_dies_before_its_commit_is_recorded_once_on_a_new_one(
    pg_app: Any, pg_url: str
) -> None:
    world = World.build(pg_app)
    bag = world.bag_at("collected", "PAT-DROP-3")
    engine = pg_app.extensions["vein2vein"].db.engine
    killed: list[int] = []

    def kill_once(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # the server ends the scan's own connection as it is about to lock the bag
        if not killed and "FOR NO KEY UPDATE" in statement:
            pid = connection.connection.dbapi_connection.info.backend_pid
            with psycopg.connect(_libpq_url(pg_url), autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
            killed.append(pid)

    sa.event.listen(engine, "before_cursor_execute", kill_once)
    try:
        response = world.scan("aph", bag["barcode"], "verify_label", "APH-1")
    finally:
        sa.event.remove(engine, "before_cursor_execute", kill_once)
    assert killed, "the scan never locked its bag"
    assert response.status_code == 201, response.get_data(as_text=True)
    events = world.get("aph", f"/api/v1/units/{bag['din']}/events").json
    assert [e["action"] for e in events["events"] if e["action"] == "verify_label"] == [
        "verify_label"
    ]


def test_a_signed_in_page_is_a_503_page_to_try_again(world: World, tmp_path: Path) -> None:
    """The page is drawn without the signed-in header (who is signed in is in the database)."""
    name = world.app.config["SESSION_COOKIE_NAME"]
    cookie = world.browser("aph").get_cookie(name)
    assert cookie is not None
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    app = create_app(_settings(url, tmp_path / "var"))  # the same secret: the session holds
    client = app.test_client()
    client.set_cookie(name, cookie.value)
    response = client.get("/orders/CH?x=1")
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "1"
    page = response.get_data(as_text=True)
    assert "database_unavailable" in page
    assert 'href="/orders/CH?x=1">Try again' in page
    app.extensions["vein2vein"].db.engine.dispose()
