"""Fixtures: real PostgreSQL and SQLite databases built by the migrations, the app, test data.

PostgreSQL comes from TEST_DATABASE_URL (default: the local server). Each run creates its own
database there, migrates it from empty, and drops it at the end. Without a reachable server the
PostgreSQL tests are skipped and the summary says so; with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from sqlmodel import SQLModel

from services.config import Settings
from services.db import migrate
from services.domain.audit import GENESIS
from services.domain.products import PROFILE_DAYS, PROFILE_SEED
from services.domain.products import SEED as PRODUCT_SEED
from services.web import create_app
from tests.world import World

# Without TEST_DATABASE_URL: the local server, then the one `docker compose up -d db` starts.
DEFAULT_TEST_DATABASE_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://vein2vein:vein2vein@127.0.0.1:5432/vein2vein",
)
TEST_SECRET = "test-secret-" + uuid.uuid4().hex
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_unavailable: dict[str, str] = {}


def _libpq_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


HOW_TO_GET = {
    "PostgreSQL": "docker compose up -d db (or set TEST_DATABASE_URL)",
    "Redis": "docker compose up -d redis (or set TEST_REDIS_URL)",
    "Chromium": "apt-get install chromium (Debian's package; Playwright drives it)",
    "axe-core": "npm install --prefix .venv/axe axe-core@4 (make install runs it if npm is there)",
    "poppler-utils": "apt-get install poppler-utils (pdftotext, pdftoppm read the report back)",
    "OpenID provider": "node and npm, then make install (npm oidc-provider into .venv/oidc)",
}


def _service_missing(name: str, reason: str) -> None:
    _unavailable[name] = reason
    message = f"{name} is not reachable ({reason})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true makes a missing service a failure", pytrace=False)
    pytest.skip(f"{message}; get it with: {HOW_TO_GET.get(name, 'see the README')}")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    given = os.environ.get("TEST_DATABASE_URL")
    candidates = [given] if given else list(DEFAULT_TEST_DATABASE_URLS)
    errors = []
    for url in candidates:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            psycopg.connect(_libpq_url(url), connect_timeout=3).close()
        except psycopg.Error as error:
            errors.append(f"{sa.make_url(url).render_as_string()}: {str(error).strip()}")
            continue
        return url
    _service_missing("PostgreSQL", "; ".join(errors))
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A database of this run's own, migrated from empty by Alembic."""
    name = f"v2v_test_{uuid.uuid4().hex[:10]}"
    admin_url = _libpq_url(pg_server_url)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with psycopg.connect(_libpq_url(url), autocommit=True) as connection:
        # the record tables refuse TRUNCATE (append-only triggers); between tests a superuser
        # empties them with triggers off, which no application role can do
        connection.execute("SET session_replication_role = replica")
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        connection.execute(
            "INSERT INTO chain_heads (key, length, head) VALUES ('unattributed', 0, %s)",
            (GENESIS,),
        )
        # the products the migration seeds, as a fresh database has them
        for product in PRODUCT_SEED:
            connection.execute(
                "INSERT INTO products (code, name, label_thaw_minutes, source, created_at) "
                "VALUES (%s, %s, %s, %s, now())",
                (product.code, product.name, product.label_thaw_minutes, product.source),
            )
        # and their profiles (version 1), as the migration seeds them
        columns = ", ".join(PROFILE_DAYS)
        marks = ", ".join(["%s"] * len(PROFILE_DAYS))
        for seed in PROFILE_SEED:
            connection.execute(
                f"INSERT INTO product_profiles (product, version, {columns}, release_before_ld, "
                f"monitoring, sources, created_at, reason) VALUES (%s, 1, {marks}, %s, %s, %s, "
                "now(), 'seeded')",
                (
                    seed.product,
                    *(seed.values.get(name) for name in PROFILE_DAYS),
                    seed.values.get("release_before_ld", True),
                    json.dumps(seed.values.get("monitoring") or {}),
                    json.dumps(seed.sources),
                ),
            )


def _settings(url: str, var_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": url,
        "var_dir": var_dir,
        "secret_key": TEST_SECRET,
        # the test peers listen on loopback; one test turns this off to see the refusal
        "webhook_allow_private_targets": True,
        "notify_backoff_seconds": 0.0,
        "notify_max_attempts": 4,
        # every test client signs in from 127.0.0.1; the rate-limit tests set their own limits
        "login_rate_limit": "1000 per minute",
        # one test token scans faster than any scanner can (an in-process scan takes ~8 ms,
        # over the default 100 a second); the rate-limit tests set their own limits
        "api_rate_limit": "100000 per second",
        # the property walks and the fuzzer are refused (and call without a token) far more
        # often than a person; the tests of these limits set their own
        "refusal_rate_limit": "100000 per minute",
        "api_auth_failure_limit": "100000 per minute",
    }
    values.update(overrides)
    if values["app_env"] == "production":  # production will not start without it
        values.setdefault("webhook_secret_key", Fernet.generate_key().decode())
    return Settings(_env_file=None, **values)


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgresql":
        url = str(request.getfixturevalue("pg_url"))
        _truncate_all(url)
        return url
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "vein2vein.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """Apps on this test's database, with settings overridden as a test needs."""
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        application = create_app(_settings(database_url, tmp_path / "var", **overrides))
        application.config["TESTING"] = True
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["vein2vein"].db.engine.dispose()


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory()


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def world(app: Any) -> World:
    return World.build(app)


@pytest.fixture
def pg_app(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    """The app on PostgreSQL only, for tests about PostgreSQL itself."""
    _truncate_all(pg_url)
    application = create_app(_settings(pg_url, tmp_path / "var"))
    yield application
    application.extensions["vein2vein"].db.engine.dispose()


_not_run: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # under pytest-xdist the skips happen in the workers: the controller learns of a missing
    # service from the skip message itself, "Skipped: NAME is not reachable (REASON); get it..."
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
        for name in HOW_TO_GET:
            prefix = f"{name} is not reachable ("
            if message.startswith(prefix):
                _not_run[name] = _not_run.get(name, 0) + 1
                reason = message.removeprefix(prefix).rsplit("); get it with:", 1)[0]
                _unavailable.setdefault(name, reason)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _unavailable:
        return
    terminalreporter.section("NOT RUN: services not reachable", sep="=", yellow=True)
    for name, reason in _unavailable.items():
        terminalreporter.write_line(f"{name}: {_not_run.get(name, 0)} tests not run ({reason})")
        terminalreporter.write_line(f"  get it with: {HOW_TO_GET.get(name, 'see the README')}")
    terminalreporter.write_line(
        "Then run `make test` again (`docker compose up -d db redis` starts both servers). "
        "The embedded (SQLite) tests did run."
    )


DEFAULT_TEST_REDIS_URLS = ("redis://127.0.0.1:6379/15", "redis://:vein2vein@127.0.0.1:6379/15")


def _own_redis_database(url: str) -> str:
    """Each pytest-xdist worker its own database number (15, 14, ...): tests flush theirs."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    base, _, tail = url.rpartition("/")
    if not tail.isdigit() or "//" not in base:
        base, tail = url.rstrip("/"), "15"
    if int(tail) - index < 0:
        raise RuntimeError(f"more pytest-xdist workers than Redis databases below {url}")
    return f"{base}/{int(tail) - index}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    given = os.environ.get("TEST_REDIS_URL")
    errors = []
    for url in [given] if given else DEFAULT_TEST_REDIS_URLS:
        url = _own_redis_database(url)
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as error:
            errors.append(f"{url.split('@')[-1]}: {error}")
            continue
        return url
    _service_missing("Redis", "; ".join(errors))
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def openid_provider() -> Iterator[Any]:
    """A real OpenID provider (npm oidc-provider on node), started once and stopped at the end."""
    from tests import oidc

    why = oidc.missing()
    if why is not None:
        _service_missing("OpenID provider", why)
    yield from oidc.start()


@pytest.fixture
def sso_app(app_factory: Any, openid_provider: Any) -> Any:
    """The app with single sign-on at the test provider."""
    return app_factory(**openid_provider.settings())
