"""The `vein2vein` command as a newcomer runs it: a real process on a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.config import Settings
from services.web import create_app
from tests.conftest import TEST_SECRET
from tests.processes import demo_tokens
from tests.world import sign_in

VEIN2VEIN = str(Path(sys.executable).with_name("vein2vein"))


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(tmp_path / "var"),
        "APP_ENV": "test",
        "SECRET_KEY": TEST_SECRET,
    }
    env.pop("FLASK_APP", None)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VEIN2VEIN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_sites_users_and_a_token_from_the_cli(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    for args in (
        ("site", "add", "APH-9", "--kind", "collection", "--name", "Apheresis", "--fin", "A9999"),
        ("site", "add", "MFG-9", "--kind", "manufacturing", "--name", "Mfg", "--fin", "M9999"),
        ("site", "add", "TRT-9", "--kind", "treatment", "--name", "Treatment"),
        ("user", "add", "nurse@example.org", "--role", "care_team", "--site", "TRT-9"),
    ):
        result = run(cli_env, *args)
        assert result.returncode == 0, result.stderr
    created = run(cli_env, "token", "create", "nurse@example.org")
    assert created.returncode == 0, created.stderr
    token = created.stdout
    assert token.endswith("\n")
    assert token.count("\n") == 1
    assert token.startswith("v2v_")
    token = token.strip()

    app = create_app(
        Settings(
            app_env="test",
            database_url=database_url,
            var_dir=tmp_path / "var",
            secret_key=TEST_SECRET,
        )
    )
    response = app.test_client().post(
        "/api/v1/orders",
        json={
            "patient_ref": "P-1",
            "product": "axi-cel",
            "collection_site": "APH-9",
            "manufacturing_site": "MFG-9",
            "treatment_site": "TRT-9",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.json
    assert response.json["coi"].startswith("CHA9999")
    engine = app.extensions["vein2vein"].db.engine
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
    engine.dispose()
    assert token not in stored
    assert all(len(h) == 64 for h in stored)


def test_cli_refusals_are_one_line_and_non_zero(cli_env: dict[str, str]) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    no_fin = run(cli_env, "site", "add", "APH-9", "--kind", "collection", "--name", "A")
    assert no_fin.returncode != 0
    assert "needs its FIN" in no_fin.stderr
    assert "Traceback" not in no_fin.stderr
    bad_kind = run(cli_env, "site", "add", "X", "--kind", "moon", "--name", "A")
    assert bad_kind.returncode != 0
    no_user = run(cli_env, "token", "create", "ghost@example.org")
    assert no_user.returncode != 0
    assert "no user" in no_user.stderr
    assert no_user.stdout == ""


def test_demo_is_idempotent_and_prints_the_logins(
    cli_env: dict[str, str], database_url: str
) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    first = run(cli_env, "demo")
    assert first.returncode == 0, first.stderr
    assert "courier@coldchain.demo" in first.stdout
    engine = sa.create_engine(database_url)

    def counts() -> tuple[int, ...]:
        with engine.connect() as connection:
            return tuple(
                connection.execute(
                    sa.select(sa.func.count()).select_from(sa.table(table))
                ).scalar_one()
                for table in ("sites", "users", "orders", "units", "custody_events", "shipments")
            )

    before = counts()
    second = run(cli_env, "demo")
    assert second.returncode == 0, second.stderr
    assert counts() == before
    with engine.connect() as connection:
        states = set(connection.execute(sa.text("SELECT state FROM units")).scalars())
        live_tokens = connection.execute(
            sa.text("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
        ).scalar_one()
    engine.dispose()
    assert states >= {
        "collected",
        "label_verified",
        "cryopreserved",
        "packed",
        "in_transit",
        "delivered",
        "received",
        "in_manufacturing",
    }
    assert live_tokens == 8  # the first run's tokens were revoked by the second

    # the printed password signs a demo user in on the pages
    password = re.search(r"the password (\S+)", second.stdout)
    assert password, second.stdout
    app = create_app(_settings(database_url, cli_env))
    response = sign_in(app.test_client(), "operator@eastfield.demo", password.group(1))
    assert response.status_code == 302


def _settings(database_url: str, env: dict[str, str]) -> Settings:
    return Settings(
        _env_file=None,
        app_env="test",
        database_url=database_url,
        var_dir=Path(env["VAR_DIR"]),
        secret_key=TEST_SECRET,
    )


def test_passwords_from_the_cli_never_on_the_command_line(
    cli_env: dict[str, str], database_url: str
) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    assert (
        run(cli_env, "site", "add", "TRT-9", "--kind", "treatment", "--name", "T").returncode == 0
    )
    added = _run_input(
        cli_env,
        "first long password\n",
        "user",
        "add",
        "nurse@example.org",
        "--role",
        "care_team",
        "--site",
        "TRT-9",
        "--password-stdin",
    )
    assert added.returncode == 0, added.stderr
    app = create_app(_settings(database_url, cli_env))
    assert sign_in(app.test_client(), "nurse@example.org", "first long password").status_code == 302

    weak = _run_input(
        cli_env, "short\n", "user", "password", "nurse@example.org", "--password-stdin"
    )
    assert weak.returncode != 0
    assert "at least 12 characters" in weak.stderr

    changed = _run_input(
        cli_env,
        "second long password\n",
        "user",
        "password",
        "nurse@example.org",
        "--password-stdin",
    )
    assert changed.returncode == 0, changed.stderr
    assert sign_in(app.test_client(), "nurse@example.org", "first long password").status_code == 401
    assert (
        sign_in(app.test_client(), "nurse@example.org", "second long password").status_code == 302
    )
    app.extensions["vein2vein"].db.engine.dispose()


def _run_input(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VEIN2VEIN, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dead_letters_are_listed_replayed_on_record_and_delivered_by_hand(
    cli_env: dict[str, str], app_factory: Any
) -> None:
    from tests.receivers import webhook_receiver
    from tests.world import World

    with webhook_receiver() as receiver:
        receiver.script = [500] * 4
        world = World.build(app_factory())
        order = world.enroll()
        bag = world.collect(order["coi"])
        assert (
            world.post(
                "care",
                "/api/v1/subscriptions",
                {"coi": order["coi"], "channel": "webhook", "target": receiver.url},
            ).status_code
            == 201
        )
        assert world.scan("aph", bag["barcode"], "verify_label", "APH-1").status_code == 201
        env = {
            **cli_env,
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "NOTIFY_MAX_ATTEMPTS": "4",
            "NOTIFY_BACKOFF_SECONDS": "0",
        }
        delivered = run(env, "notifications", "deliver")
        assert delivered.returncode == 0, delivered.stderr
        assert "1 dead" in delivered.stdout
        dead = run(env, "notifications", "dead")
        assert "1 dead letters" in dead.stdout
        assert "HTTP 500" in dead.stdout
        no_reason = run(
            env, "notifications", "replay", "--all", "--reason", " ", "--by", "qa@example.org"
        )
        assert no_reason.returncode != 0
        assert "needs a reason" in no_reason.stderr
        replayed = run(
            env,
            "notifications",
            "replay",
            "--all",
            "--reason",
            "receiver fixed",
            "--by",
            "qa@example.org",
        )
        assert replayed.returncode == 0, replayed.stderr
        assert "1 notifications queued again" in replayed.stdout
        delivered = run(env, "notifications", "deliver")
        assert "1 delivered" in delivered.stdout
        assert len(receiver.accepted()) == 1
    engine = sa.create_engine(cli_env["DATABASE_URL"])
    with engine.connect() as connection:
        audit = connection.execute(
            sa.text(
                "SELECT r.reason, u.email, r.previous_state FROM notification_replays r "
                "JOIN users u ON u.id = r.replayed_by_id"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in audit] == [("receiver fixed", "qa@example.org", "dead")]


def test_the_demos_late_shipment_is_in_delays_alerted_and_cleared_by_delivery(
    cli_env: dict[str, str], app_factory: Any
) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    demo = run(cli_env, "demo")
    assert "1 late, 1 escalated" in demo.stdout
    tokens = demo_tokens(demo.stdout)
    client = app_factory().test_client()

    def get(who: str, path: str) -> Any:
        return client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"}).json

    (late,) = get("care@northgate.demo", "/api/v1/delays")["items"]
    assert (late["leg"], late["status"], late["site"]) == (
        "pickup_to_delivery",
        "late",
        "COLDCHAIN",
    )
    feed = get("care@northgate.demo", "/api/v1/notifications")["items"]
    assert {"deadline_late", "deadline_escalated"} <= {item["kind"] for item in feed}
    courier_feed = get("courier@coldchain.demo", "/api/v1/notifications")["items"]
    assert [item["kind"] for item in courier_feed] == ["deadline_escalated"]
    delivered = client.post(
        "/api/v1/scans",
        json={"barcode": f"={late['din']}00", "action": "deliver", "site": "MFG-EAST"},
        headers={"Authorization": f"Bearer {tokens['courier@coldchain.demo']}"},
    )
    assert delivered.status_code == 201, delivered.json
    assert get("care@northgate.demo", "/api/v1/delays")["items"] == []


def test_tokens_are_listed_and_revoked_from_the_cli(cli_env: dict[str, str]) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    for args in (
        ("site", "add", "TRT-9", "--kind", "treatment", "--name", "T"),
        ("user", "add", "nurse@example.org", "--role", "care_team", "--site", "TRT-9"),
    ):
        assert run(cli_env, *args).returncode == 0
    token = run(
        cli_env, "token", "create", "nurse@example.org", "--name", "scanner-3", "--days", "30"
    ).stdout.strip()
    listed = run(cli_env, "token", "list", "nurse@example.org").stdout
    assert "scanner-3" in listed
    assert token[:12] in listed
    assert token not in listed
    assert "expires" in listed
    revoked = run(cli_env, "token", "revoke", "nurse@example.org", "--name", "scanner-3")
    assert "1 tokens revoked" in revoked.stdout
    assert "revoked" in run(cli_env, "token", "list", "nurse@example.org").stdout
