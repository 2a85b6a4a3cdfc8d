"""Migrations: one head, upgrade from empty, and no drift between the tables and the migrations."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from services.db import migrate
from tests.conftest import _libpq_url


def test_a_single_head() -> None:
    assert len(migrate.heads("sqlite://")) == 1


@pytest.mark.postgres
def test_upgrade_from_empty_and_no_drift_on_postgresql(pg_server_url: str) -> None:
    name = f"v2v_migrate_{uuid.uuid4().hex[:8]}"
    admin = _libpq_url(pg_server_url)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        migrate.check(url)  # raises when the models and the migrations differ
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == migrate.heads(url)[0]
        engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_from_empty_and_no_drift_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    migrate.check(url)


# what keeps the record append-only and identities fixed; a migration that rebuilds a table
# (SQLite's way to change constraints) must put its triggers back
RECORD_TABLES = (
    "custody_events",
    "refused_scans",
    "signatures",
    "audit_checkpoints",
    "label_prints",
    "reviews",
    "admin_changes",
    "logger_files",
    "temperature_readings",
    "alarm_rules",
    "condition_alarms",
    "signing_keys",
    "sla_policies",
)
IDENTITY_TABLES = ("orders", "units", "users", "sites")


def _triggers(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        return {row[0] for row in connection.exec_driver_sql(query)}


def test_every_guarding_trigger_is_there_after_the_migrations(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    found = _triggers(engine)
    engine.dispose()
    if engine.dialect.name == "sqlite":
        expected = {f"{t}_no_{verb}" for t in RECORD_TABLES for verb in ("update", "delete")}
    else:
        expected = {f"{t}_{kind}" for t in RECORD_TABLES for kind in ("append_only", "no_truncate")}
    expected |= {f"{t}_{kind}" for t in IDENTITY_TABLES for kind in ("identity", "no_delete")}
    assert expected <= found, sorted(expected - found)
