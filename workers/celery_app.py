"""The Celery app, built from the same settings as the web app.

``celery -A workers.celery_app worker`` and ``... beat`` need a module-level app, so this module
reads the settings when it is imported by those commands; nothing else imports it at start-up.

Configured for at-least-once delivery (RELIABILITY.md): late acks, reject on worker loss,
prefetch 1, time limits far below the visibility timeout, retry on broker connection loss.
Tasks are idempotent and re-check their row; the beat sweeps find anything a lost message missed.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from services.config import Settings

VISIBILITY_TIMEOUT_S = 3600
TASK_SOFT_TIME_LIMIT_S = 120
TASK_TIME_LIMIT_S = 180

TASK_MODULES: list[str] = []  # notifications, deadlines and audit checkpoints register here


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # state lives in our database, not in a result backend
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT_S,
        "task_time_limit": TASK_TIME_LIMIT_S,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "beat_schedule_filename": str((settings.var_dir / "celerybeat-schedule").resolve()),
        "beat_schedule": {},
    }
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        }
    else:
        config["broker_transport_options"] = {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_timeout": 10,
            "socket_connect_timeout": 10,
            "socket_keepalive": True,
            "health_check_interval": 25,
        }
    return config


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    app = Celery("vein2vein", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    return app


celery_app = make_celery()
