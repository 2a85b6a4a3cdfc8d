"""The /api/v1 blueprint and its bearer-token authentication."""

from __future__ import annotations

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.exc import DBAPIError

from services.domain.custody import Actor
from services.operations.admin import actor_for_token
from services.web.api.schemas import Problem
from services.web.errors import problem
from services.web.state import state, utcnow

api = APIBlueprint(
    "api",
    __name__,
    url_prefix="/api/v1",
    abp_security=[{"bearer": []}],
    abp_responses={401: Problem, 403: Problem, 404: Problem, 422: Problem},
)

identifiers_tag = Tag(name="identifiers", description="ISBT 128 DIN and chain of identity")
orders_tag = Tag(name="orders", description="Orders, collections and bags")
scans_tag = Tag(name="scans", description="Custody handoffs, scan by scan")
shipments_tag = Tag(name="shipments", description="Shippers and their manifests")


@api.before_request
def authenticate() -> Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("send 'Authorization: Bearer <token>' (vein2vein token create EMAIL)")
    actor = _actor_for_token(token.strip())
    if actor is None:
        return _unauthorized("the token is unknown, expired or revoked")
    g.actor = actor
    return None


def _actor_for_token(token: str) -> Actor | None:
    # a read, so safe to repeat: once more if the pooled connection turned out to be dead
    # (services/db/engine.py pings only connections idle for a second)
    for attempt in (1, 2):
        try:
            with state().db.reading() as connection:
                return actor_for_token(connection, token, now=utcnow())
        except DBAPIError as error:
            if attempt == 2 or not error.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _unauthorized(detail: str) -> Response:
    response = problem("unauthorized", "Authentication required", detail, 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="vein2vein"'
    return response
