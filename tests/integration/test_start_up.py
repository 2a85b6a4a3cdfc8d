"""A server's app keeps what start-up made out of the garbage collector's sight (gc.freeze), so
a full collection walks only what requests make; an app built for a test does not, since tests
build one per test and a frozen one is never freed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.processes import clean_env

PROBE = """
import gc
from services.web import create_app
app = create_app()
print(gc.get_freeze_count())
"""


@pytest.mark.parametrize(("env", "frozen"), [("development", True), ("test", False)])
def test_a_servers_app_freezes_what_start_up_made(tmp_path: Path, env: str, frozen: bool) -> None:
    environment = {
        **os.environ,
        "APP_ENV": env,
        "SECRET_KEY": "x" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.db'}",
        "VAR_DIR": str(tmp_path / "var"),
    }
    ran = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    count = int(ran.stdout.strip().splitlines()[-1])
    assert (count > 10_000) is frozen, count


@pytest.mark.parametrize(
    "module", ["services.web.pages.work", "services.web.scanning", "services.web.api.epcis"]
)
def test_each_web_module_imports_first(module: str) -> None:
    """No import cycle depends on which web module a process (a worker, a CLI command, a test)
    happens to import first."""
    ran = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr[-2000:]


@pytest.mark.redis
def test_production_on_sqlite_has_no_roles_to_refuse(tmp_path: Path, redis_url: str) -> None:
    """The refusal of a privileged PostgreSQL role (test_app_role.py) leaves SQLite be."""
    ran = subprocess.run(
        [sys.executable, "-c", "from services.web import create_app; create_app()"],
        env=clean_env(
            APP_ENV="production",
            SECRET_KEY="x" * 40,
            WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
            DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.db'}",
            RATELIMIT_STORAGE_URL=redis_url,
            VAR_DIR=str(tmp_path / "var"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
