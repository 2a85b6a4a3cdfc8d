"""A database that cannot be reached is a 503 to send again, never a 500; connections the
server dropped between requests are replaced without the caller noticing.
(bench/scan_faults.py restarts PostgreSQL under load: nothing lost, nothing doubled.)"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

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
def test_connections_the_server_dropped_are_replaced_before_the_next_request(
    pg_app: Any, pg_url: str
) -> None:
    world = World.build(pg_app)
    first = world.bag_at("collected", "PAT-DROP-1")
    second = world.bag_at("collected", "PAT-DROP-2")
    assert world.scan("aph", first["barcode"], "verify_label", "APH-1").status_code == 201
    # the server ends every connection of the app's pool (as a restart or a failover does)
    with psycopg.connect(_libpq_url(pg_url), autocommit=True) as connection:
        ended = connection.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
        ).fetchone()
    assert ended is not None
    assert ended[0] >= 1
    assert world.scan("aph", second["barcode"], "verify_label", "APH-1").status_code == 201


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
