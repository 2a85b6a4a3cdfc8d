"""Least privilege on PostgreSQL: the application's own role, made by `vein2vein db app-role`,
runs the whole application and can neither rewrite the record nor switch its triggers off."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.fernet import Fernet
from flask.cli import ScriptInfo

from services import cli
from services.db import UnitOfWork, migrate, privileges
from services.operations import audit, deadlines
from services.web import create_app
from tests.conftest import _libpq_url, _settings, _truncate_all
from tests.integration.test_notifications import deliver_due, subscribe
from tests.processes import clean_env
from tests.receivers import webhook_receiver
from tests.world import PASSWORD, World, sign_in

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
        # configuration changes append a version and an entry in the admin log; a wrong
        # password counts for its client (and a right one clears the count again)
        policy = {
            "limits_hours": {"collection_to_pickup": 30},
            "reason": "renewed",
            "signature": world.signature("qa"),
        }
        changed = world.post("qa", "/api/v1/sla-policies/axi-cel", policy)
        assert changed.status_code == 201, changed.json
        world.browser("admin")
        assert sign_in(app.test_client(), "care@example.org", "not it at all").status_code == 401
        assert sign_in(app.test_client(), "care@example.org", PASSWORD).status_code == 302
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
    # the versions of settings and the admin log: a new version is a new row, never an edit
    "UPDATE sla_policies SET version = version + 1",
    "DELETE FROM sla_policies",
    "TRUNCATE sla_policies CASCADE",
    "UPDATE alarm_rules SET limit_c = -20",
    "DELETE FROM alarm_rules",
    "UPDATE signing_keys SET public_key = 'x'",
    "DELETE FROM signing_keys",
    "UPDATE admin_changes SET actor = 'someone else'",
    "DELETE FROM admin_changes",
    "TRUNCATE admin_changes CASCADE",
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


def test_every_append_only_table_is_one_the_app_role_may_only_append_to(pg_url: str) -> None:
    """A table whose triggers refuse UPDATE and DELETE gets no such grant either."""
    with psycopg.connect(_libpq_url(pg_url), autocommit=True) as connection:
        guarded = {
            row[0]
            for row in connection.execute(
                "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = 'vein2vein_append_only'"
            )
        }
    assert {"sla_policies", "alarm_rules", "signing_keys", "admin_changes"} <= guarded
    assert guarded <= privileges.RECORD_TABLES


START_WEB = "from services.web import create_app; create_app(); print('started')"
START_WORKER = "from workers.tasks import database; database(); print('started')"


def _start(url: str, redis_url: str, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """A production process's start-up, as gunicorn (the web) or Celery (a worker) does it."""
    env = clean_env(
        APP_ENV="production",
        SECRET_KEY="a-production-secret-" + uuid.uuid4().hex,
        WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=url.replace("postgresql+psycopg://", "postgresql://"),
        RATELIMIT_STORAGE_URL=redis_url,
        BROKER_URL=redis_url,
        VAR_DIR=str(tmp_path / "var"),
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.redis
def test_production_refuses_a_superuser_and_runs_as_the_app_role(
    app_role: tuple[str, str], pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    for code in (START_WEB, START_WORKER):
        refused = _start(pg_url, redis_url, tmp_path, code)
        assert refused.returncode != 0
        assert "started" not in refused.stdout
        assert "refuses to run as PostgreSQL role postgres: postgres is a superuser" in (
            refused.stderr
        )
        assert "vein2vein db app-role vein2vein_app --password-stdin" in refused.stderr
    _name, url = app_role
    for code in (START_WEB, START_WORKER):
        started = _start(url, redis_url, tmp_path, code)
        assert started.returncode == 0, started.stderr[-2000:]
        assert started.stdout.strip().endswith("started")
    # and the production app, as the app role, serves with secure cookies
    app = create_app(
        _settings(url, tmp_path / "prod-var", app_env="production", ratelimit_storage_url=redis_url)
    )
    try:
        world = World.build(app)
        world.browser("care")
        response = sign_in(app.test_client(), "care@example.org", PASSWORD)
        assert response.status_code == 302
        assert "Secure" in response.headers["Set-Cookie"]
    finally:
        app.extensions["vein2vein"].db.engine.dispose()


@pytest.mark.redis
def test_production_refuses_the_owner_of_the_tables(
    pg_server_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The owner need not be a superuser to drop the record's triggers: a database made and
    migrated by an ordinary role, as a hosted PostgreSQL gives one."""
    owner = f"v2v_owner_{uuid.uuid4().hex[:8]}"
    database = f"v2v_owned_{uuid.uuid4().hex[:8]}"
    server = _libpq_url(pg_server_url)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER PASSWORD 'owner-password-1'")
        connection.execute(f'CREATE DATABASE "{database}" OWNER {owner}')
    url = (
        sa.make_url(pg_server_url)
        .set(username=owner, password="owner-password-1", database=database)
        .render_as_string(hide_password=False)
    )
    try:
        migrate.upgrade(url)
        refused = _start(url, redis_url, tmp_path, START_WEB)
        assert refused.returncode != 0
        assert f"{owner} owns the tables" in refused.stderr
        assert "vein2vein db app-role" in refused.stderr
        # the same owner at the command line (migrations, grants) is not refused
        cli = create_app(
            _settings(
                url, tmp_path / "cli-var", app_env="production", ratelimit_storage_url=redis_url
            ),
            web=False,
        )
        cli.extensions["vein2vein"].db.engine.dispose()
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            connection.execute(f"DROP ROLE IF EXISTS {owner}")
