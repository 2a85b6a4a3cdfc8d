"""The Flask application: JSON API under /api/v1 (with its OpenAPI document) and the pages."""

from __future__ import annotations

import logging

from flask_openapi3 import Info, OpenAPI

from services.broker import Kicker, kick_after_commit
from services.config import Settings
from services.db import Database
from services.web import security
from services.web.errors import register_error_handlers, validation_problem
from services.web.state import AppState

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> OpenAPI:
    settings = settings or Settings()
    logging.basicConfig(level=logging.INFO)
    app = OpenAPI(
        __name__,
        info=Info(
            title="vein2vein",
            version="1",
            description="Chain of identity and chain of custody for autologous CAR-T therapy.",
        ),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_status=422,
        validation_error_callback=validation_problem,
        doc_prefix=API_PREFIX,
        doc_url="/openapi.json",
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    database = Database.from_url(
        settings.sqlalchemy_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    kick_after_commit(database.session_factory, Kicker(settings))
    app.extensions["vein2vein"] = AppState(settings=settings, db=database)

    from services.web.api import api
    from services.web.pages import pages

    app.register_api(api)
    app.register_blueprint(pages)
    security.install(app, settings)
    register_error_handlers(app)
    return app
