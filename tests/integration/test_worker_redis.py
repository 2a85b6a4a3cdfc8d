"""The production worker configuration on real Redis: the worker boots and answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import Settings
from tests.processes import BIN, clean_env, running, wait_for_log
from workers.celery_app import make_celery

pytestmark = pytest.mark.redis


def test_worker_on_redis_answers_a_ping(redis_url: str, tmp_path: Path) -> None:
    env = clean_env(BROKER_URL=redis_url)
    command = [
        str(BIN / "celery"),
        "-A",
        "workers.celery_app",
        "worker",
        "--concurrency=1",
        "--loglevel=INFO",
        "--hostname",
        f"test-{tmp_path.name}@%h",
    ]
    with running(command, cwd=tmp_path, env=env, log=tmp_path / "worker.log") as worker:
        log = wait_for_log(tmp_path / "worker.log", "ready.", worker)
        assert "redis://" in log
        app = make_celery(Settings(_env_file=None, broker_url=redis_url, var_dir=tmp_path))
        replies = app.control.ping(timeout=5)
        assert any(f"test-{tmp_path.name}@" in name for reply in replies for name in reply)
        assert app.conf.task_acks_late is True
        assert app.conf.broker_transport_options["visibility_timeout"] > app.conf.task_time_limit
