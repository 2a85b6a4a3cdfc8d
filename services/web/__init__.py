"""The Flask application: JSON API under /api/v1 (with its OpenAPI document) and the pages."""

from __future__ import annotations

import gc
import logging

from flask_openapi3 import Info, OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix

from services.broker import Kicker, kick_after_commit
from services.config import Settings
from services.db import Database, privileges
from services.web import security
from services.web.bodies import BoundedJSONProvider
from services.web.errors import register_error_handlers, validation_problem
from services.web.state import AppState

API_PREFIX = "/api/v1"
# what any operation can answer besides its own: a malformed request, no or a bad token, a role
# or site that may not, an object not there (or not the caller's to see), a state that does not
# allow it, a body too large, a body or parameter that does not validate, too many requests
ERRORS = (400, 401, 403, 404, 409, 413, 422, 429)
PROBLEM = "application/problem+json"


class ProblemOpenAPI(OpenAPI):
    """The generated document says what every error really is: application/problem+json."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for operations in self.spec_json.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status in ERRORS:
                    responses.setdefault(str(status), {"description": HTTP_STATUS_TEXT[status]})
                for status, response in responses.items():
                    if int(status) >= 400:
                        response["content"] = {PROBLEM: problem}


HTTP_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
}


class _NoAccessLog(logging.Filter):
    """The development server's line per request (werkzeug's access log), dropped unless
    LOG_REQUESTS=1: its start-up lines and its errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg.rstrip().endswith('"%s" %s %s')
        )


_QUIET = _NoAccessLog()


def _access_log(enabled: bool) -> None:
    werkzeug = logging.getLogger("werkzeug")
    if enabled:
        werkzeug.removeFilter(_QUIET)
    else:
        werkzeug.addFilter(_QUIET)


def create_app(settings: Settings | None = None, *, web: bool = True) -> OpenAPI:
    """The application. ``web=False``: settings, database and broker only, no routes (the
    command line's own commands need no API or pages, and start about a second sooner)."""
    settings = settings or Settings()
    logging.basicConfig(level=logging.INFO)
    app = ProblemOpenAPI(
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
    # every request.get_json() checks the body's nesting before parsing (web/bodies.py)
    app.json = BoundedJSONProvider(app)
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
    if not web:
        return app  # the command line: migrations and grants run as the owner of the tables
    if settings.app_env == "production":
        # never as a superuser or the tables' owner: they could switch the record's triggers off
        privileges.refuse_privileged_role(database.engine)

    from services.web.api import api
    from services.web.family import family
    from services.web.pages import pages

    app.register_api(api)
    app.register_blueprint(pages)
    app.register_blueprint(family)
    _access_log(settings.log_requests)
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    security.install(app, settings)
    register_error_handlers(app)
    if settings.app_env != "test":
        # What start-up made (modules, models, routes, schemas) lives as long as the process:
        # out of the collector's sight, a full collection walks only what requests make, and
        # stops costing a request 100 ms now and then. Not in tests: they build an app per
        # test, and a frozen one is never freed.
        gc.collect()
        gc.freeze()
    return app
