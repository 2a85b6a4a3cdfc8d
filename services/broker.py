"""The broker, as the web app and the CLI see it: the shared Celery settings and the kick.

The kick tells the workers "there is news in the outbox" right after a commit. It is best
effort: it runs on a background thread, so a broker that is down or slow never delays or fails
a scan; the beat's dispatcher finds the rows a few seconds later either way.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from services.config import Settings
from services.db.uow import PENDING_FLAG

log = logging.getLogger(__name__)

DISPATCH_TASK = "notifications.dispatch"
VISIBILITY_TIMEOUT_S = 3600
TASK_SOFT_TIME_LIMIT_S = 60
TASK_TIME_LIMIT_S = 90


def celery_config(settings: Settings) -> dict[str, Any]:
    """At-least-once settings (RELIABILITY.md); the database decides retries, not Celery."""
    # the beat keeps its schedule here: a beat that cannot write it dies, and with it the
    # dispatcher that re-offers every claim a killed task left behind
    settings.var_dir.mkdir(parents=True, exist_ok=True)
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
        "beat_schedule": {
            "dispatch-notifications": {
                "task": DISPATCH_TASK,
                "schedule": settings.dispatch_interval_seconds,
            },
            "sweep-deadlines": {
                "task": "deadlines.sweep",
                "schedule": settings.sweep_interval_seconds,
            },
            "fold-digests": {
                "task": "notifications.digest",
                "schedule": settings.digest_interval_seconds,
            },
            "family-emails": {
                "task": "family.notify",
                "schedule": settings.family_email_interval_seconds,
            },
            "plan-holds": {
                "task": "plans.expire",
                "schedule": settings.plan_interval_seconds,
            },
            "audit-checkpoint": {
                "task": "audit.checkpoint",
                "schedule": settings.checkpoint_interval_seconds,
            },
        },
    }
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # kombu >= 5.4 keeps its exchange table here; its default is ./control in the cwd
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    else:
        config["broker_transport_options"] = {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 25,
        }
    return config


class Kicker:
    """Sends the dispatch task from a background thread; kicks made meanwhile coalesce.

    One dispatch claims every due row, so a burst of commits needs one kick, not one each: after
    a send the thread waits ``MIN_INTERVAL_S`` and then sends once for all that came meanwhile.
    """

    MIN_INTERVAL_S = 0.2

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="kick", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        app = Celery("vein2vein-kick")
        app.conf.update(celery_config(self._settings))
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                app.send_task(DISPATCH_TASK, retry=False)
            except Exception as error:  # the beat's dispatcher will find the rows anyway
                log.warning("could not kick the notification dispatcher: %s", error)
            time.sleep(self.MIN_INTERVAL_S)


def kick_after_commit(session_factory: sessionmaker[Any], kicker: Kicker) -> None:
    """Kick once a transaction that wrote news has committed, never before."""

    @event.listens_for(session_factory, "after_commit")
    def _committed(session: Session) -> None:
        if session.info.pop(PENDING_FLAG, False):
            kicker.kick()

    @event.listens_for(session_factory, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(PENDING_FLAG, None)
