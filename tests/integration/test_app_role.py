"""Least privilege on PostgreSQL: the application's own role, made by `vein2vein db app-role`,
runs the whole application and can neither rewrite the record nor switch its triggers off."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask.cli import ScriptInfo

from services import cli
from services.db import UnitOfWork
from services.operations import audit, deadlines
from services.web import create_app
from tests.conftest import _libpq_url, _settings, _truncate_all
from tests.integration.test_notifications import deliver_due, subscribe
from tests.receivers import webhook_receiver
from tests.world import World

pytestmark = pytest.mark.postgres


@pytest.fixture
def app_role(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The role, made by the CLI as the owner of the tables; its URL."""
    _truncate_all(pg_url)
    name = f"v2v_app_{uuid.uuid4().hex[:8]}"
    owner = create_app(_settings(pg_url, tmp_path / "owner-var"))
    result = CliRunner().invoke(
        cli.main,
        ["db", "app-role", name, "--password-stdin"],
        input="app-role-password-1\n",
        obj=ScriptInfo(create_app=lambda: owner),
    )
    owner.extensions["vein2vein"].db.engine.dispose()
    assert result.exit_code == 0, result.output
    assert "PASSWORD '...'" in result.output  # the password itself is never echoed
    url = sa.make_url(pg_url).set(username=name, password="app-role-password-1")
    yield name, url.render_as_string(hide_password=False)
    with psycopg.connect(_libpq_url(pg_url), autocommit=True) as connection:
        connection.execute(f'REVOKE ALL ON DATABASE "{url.database}" FROM {name}')
        connection.execute(f"DROP OWNED BY {name}")
        connection.execute(f"DROP ROLE {name}")


def test_the_whole_application_runs_as_the_app_role(
    app_role: tuple[str, str], tmp_path: Path
) -> None:
    _name, url = app_role
    app = create_app(_settings(url, tmp_path / "var"))
    try:
        world = World.build(app)  # sites, users and tokens, written as the app role
        bag = world.bag_at("receive", "PAT-LEAST")
        batch = world.post("op", "/api/v1/batches", {"coi": bag["coi"]})
        assert batch.status_code == 201, batch.json
        assert world.scan("op", bag["barcode"], "pack", "MFG-1").status_code == 409  # refusals too
        with webhook_receiver() as receiver:
            subscribe(world, coi=bag["coi"], channel="webhook", target=receiver.url)
            world.post(
                "op", f"/api/v1/batches/{batch.json['code']}/status", {"status": "transduction"}
            )
            assert deliver_due(app) == ["delivered"]
        state = app.extensions["vein2vein"]
        with UnitOfWork(state.db.session_factory) as uow:
            deadlines.sweep(uow.session, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
            audit.checkpoint(uow.session, now=dt.datetime.now(dt.UTC))
            uow.commit()
        with UnitOfWork(state.db.session_factory) as uow:
            report = audit.verify(uow.session)
        assert report.ok, report.finding
        assert world.browser("care").get("/").status_code == 200  # a login writes users too
    finally:
        app.extensions["vein2vein"].db.engine.dispose()


REFUSED = [
    "UPDATE custody_events SET reason = 'rewritten'",
    "DELETE FROM custody_events",
    "TRUNCATE custody_events CASCADE",
    "UPDATE refused_scans SET detail = 'x'",
    "DELETE FROM signatures",
    "DELETE FROM audit_checkpoints",
    "UPDATE orders SET patient_ref = 'PAT-SOMEONE-ELSE'",
    "UPDATE units SET din = 'A100126999999'",
    "UPDATE users SET email = 'someone@example.org'",
    "UPDATE sites SET code = 'X'",
    "DELETE FROM orders",
    "SET session_replication_role = replica",
    "ALTER TABLE custody_events DISABLE TRIGGER ALL",
    "DROP TRIGGER custody_events_append_only ON custody_events",
    "ALTER TABLE custody_events ADD COLUMN note text",
    "DROP TABLE custody_events CASCADE",
    "CREATE TABLE side_door (id int)",
    "UPDATE alembic_version SET version_num = '0001'",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_app_role_cannot_rewrite_the_record_or_switch_it_off(
    app_role: tuple[str, str], tmp_path: Path, statement: str
) -> None:
    _name, url = app_role
    app = create_app(_settings(url, tmp_path / "var"))
    try:
        World.build(app).bag_at("cryopreserve", "PAT-ROLE")
    finally:
        app.extensions["vein2vein"].db.engine.dispose()
    with (
        psycopg.connect(_libpq_url(url), autocommit=True) as connection,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


def test_the_app_role_is_no_superuser_and_owns_nothing(app_role: tuple[str, str]) -> None:
    _name, url = app_role
    with psycopg.connect(_libpq_url(url), autocommit=True) as connection:
        (superuser, bypass) = connection.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (None, None)
        owned = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE tableowner = current_user"
        ).fetchone()
    assert (superuser, bypass) == (False, False)
    assert owned == (0,)


def test_app_role_refuses_a_bad_name_and_sqlite(app_factory: Any) -> None:
    app = app_factory()
    runner = CliRunner()
    bad = runner.invoke(
        cli.main, ["db", "app-role", "x; DROP TABLE units"], obj=ScriptInfo(create_app=lambda: app)
    )
    assert bad.exit_code != 0
    assert "role name" in bad.output or "SQLite" in bad.output
