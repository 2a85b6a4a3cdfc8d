"""Every error leaves as application/problem+json (RFC 9457) with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, json, render_template, request
from flask_wtf.csrf import CSRFError
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError
from werkzeug.exceptions import HTTPException

from labels import LabelError
from services.domain.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://vein2vein.example/problems/"
STATUS_BY_CODE = {
    "invalid_identifier": 422,
    "invalid_request": 422,
    "coi_mismatch": 422,
    "wrong_site": 422,
    "not_in_shipment": 422,
    "event_id_reused": 422,
    "thaw_expired": 422,
    "validation_error": 422,
    "invalid_label": 422,
    "shipper_unavailable": 422,
    "invalid_readings": 422,
    "invalid_epcis": 422,
    "signature_required": 422,
    "illegal_transition": 409,
    "on_hold": 409,
    "conflict": 409,
    "sequence_exhausted": 409,
    "forbidden": 403,
    "signature_refused": 403,
    "signature_invalid": 403,
    "sso_refused": 403,
    "not_released": 409,
    "label_not_verified": 422,
    "label_not_printed": 409,
    "unknown_product": 422,
    "not_found": 404,
    "unauthorized": 401,
    "rate_limited": 429,
    "csrf_failed": 400,
    "invalid_json": 400,
    "product_not_released": 409,
    "no_capacity": 409,
    "window_violation": 422,
}


def wants_page() -> bool:
    """Pages answer errors with a page; the API (and anything asking for JSON) with problem+json."""
    return not request.path.startswith("/api/")


def error_page(code: str, title: str, detail: str, status: int) -> Response:
    body = render_template("error.html", code=code, title=title, detail=detail)
    return Response(body, status=status, mimetype="text/html")


def problem(
    code: str, title: str, detail: str, status: int | None = None, **extra: Any
) -> Response:
    status = status or STATUS_BY_CODE.get(code, 400)
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def domain_problem(error: DomainError) -> Response:
    return _retry_after(error, problem(error.code, error.title, error.detail, **error.extra))


def _retry_after(error: DomainError, response: Response) -> Response:
    if "retry_after" in error.extra:  # a RateLimited refusal says when to try again
        response.headers["Retry-After"] = str(error.extra["retry_after"])
    return response


def validation_problem(error: ValidationError) -> Response:
    """flask-openapi3 calls this for a request body, query or path that fails its model."""
    errors = [
        {"loc": [str(part) for part in item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    return problem(
        "validation_error",
        "Request does not match the API",
        f"{where}: {first['msg']}",
        errors=errors,
    )


# SQLSTATEs of a lost or refused connection: class 08, and the server shutting down or
# starting up (admin_shutdown, crash_shutdown, cannot_connect_now)
_UNREACHABLE_STATES = ("57P01", "57P02", "57P03")


def database_unreachable(error: DBAPIError) -> bool:
    """Whether the database could not be reached or dropped the connection (not a refusal of
    the statement itself): SQLAlchemy saw the connection die, the server's SQLSTATE says so, a
    connection attempt failed (psycopg gives those no SQLSTATE), or SQLite's file stayed locked
    past its busy timeout."""
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in _UNREACHABLE_STATES
    module = type(error.orig).__module__
    if module.startswith("psycopg"):
        return type(error.orig).__name__ in ("OperationalError", "InterfaceError")
    return module == "sqlite3" and "database is locked" in str(error.orig)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        if wants_page():
            status = STATUS_BY_CODE.get(error.code, 400)
            return _retry_after(error, error_page(error.code, error.title, error.detail, status))
        return domain_problem(error)

    @app.errorhandler(LabelError)
    def _label(error: LabelError) -> Response:
        return problem("invalid_label", "Label cannot be printed", str(error), 422)

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> Response:
        detail = (
            "The form had expired or did not come from this site, so nothing was done. "
            "Reload the page and try again."
        )
        if wants_page():
            return error_page("csrf_failed", "Form expired", detail, 400)
        return problem("csrf_failed", "Form expired", detail, 400)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        if error.response is not None:  # an abort() that already built its response
            return error.response  # type: ignore[return-value]
        code = (error.name or "error").lower().replace(" ", "_")
        status = error.code or 500
        if wants_page():
            return error_page(code, error.name or "Error", error.description or "", status)
        return problem(code, error.name or "Error", error.description or "", status)

    @app.errorhandler(DataError)
    def _data(error: DataError) -> Response:
        # the database refused a value the request carried (out of range, too long): bad
        # input, never a 500; logged, because the API's own validation should have said so
        log.warning("a value reached the database and was refused: %s", error.orig)
        detail = "a value in the request is outside what the record can hold"
        if wants_page():
            return error_page("invalid_request", "Invalid request", detail, 422)
        return problem("invalid_request", "Invalid request", detail, 422)

    @app.errorhandler(DBAPIError)
    def _database(error: DBAPIError) -> Response:
        if not database_unreachable(error):
            return _unexpected(error)
        # a restart or a failover: the transaction was rolled back, or (a commit cut off) its
        # fate is unknown; either way the same request sent again is safe (a scan's event_id
        # is recorded once), so say so instead of a 500
        log.warning("the database could not be reached: %s", error.orig)
        detail = (
            "the database could not be reached just now, so this may not have been recorded: "
            "send it again (a scan sent again with its event_id is recorded once)"
        )
        if wants_page():
            # not render_template: its context processors ask the database who is signed in
            page = current_app.jinja_env.get_template("unavailable.html").render(
                code="database_unavailable", title="Try again in a moment", detail=detail
            )
            response = Response(page, status=503, mimetype="text/html")
        else:
            response = problem("database_unavailable", "Database unavailable", detail, 503)
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        detail = "something went wrong on our side; the request was not applied and was logged"
        if wants_page():
            return error_page("internal_error", "Internal error", detail, 500)
        return problem("internal_error", "Internal error", detail, 500)
