"""The Celery app, built from the same settings as the web app.

``celery -A workers.celery_app worker`` and ``... beat`` need a module-level app, so this module
reads the settings when it is imported by those commands; nothing else imports it at start-up.

Configured for at-least-once delivery (RELIABILITY.md, services.broker.celery_config): late
acks, reject on worker loss, prefetch 1, time limits far below the visibility timeout, retry on
broker connection loss. Tasks are idempotent and re-check their row; the beat's dispatcher finds
anything a lost message missed.
"""

from __future__ import annotations

from celery import Celery

from services.broker import celery_config
from services.config import Settings

TASK_MODULES = ["workers.tasks"]


def make_celery(settings: Settings) -> Celery:
    app = Celery("vein2vein", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    return app


settings = Settings()
celery_app = make_celery(settings)
