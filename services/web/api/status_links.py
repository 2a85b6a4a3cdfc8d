"""Share links to the family's status page, and news marked discussed with the family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response, jsonify, request, url_for

from services.operations import family_status
from services.operations.queries import coi_value
from services.web.api.blueprint import api, orders_tag
from services.web.api.schemas import (
    OrderPath,
    StatusLinkCreate,
    StatusLinkPath,
    StatusLinkPublic,
    StatusNewsDiscussed,
    StatusNewsPath,
    StatusNewsPublic,
)
from services.web.state import current_actor, state, unit_of_work, utcnow

if TYPE_CHECKING:
    from services.db.models import StatusLink


def status_url(token: str) -> str:
    """The family's link: under PUBLIC_URL when it is set, else where this request came in."""
    public = state().settings.public_url
    path = url_for("family.status_page", token=token)
    return public.rstrip("/") + path if public else request.host_url.rstrip("/") + path


def _public(link: StatusLink, url: str | None = None) -> StatusLinkPublic:
    return StatusLinkPublic(
        id=link.id or 0,
        url=url,
        created_at=link.created_at,
        expires_at=link.expires_at,
        revoked_at=link.revoked_at,
        first_viewed_at=link.first_viewed_at,
    )


@api.post("/orders/<coi>/status-links", tags=[orders_tag], responses={201: StatusLinkPublic})
def make_status_link(
    path: OrderPath, body: StatusLinkCreate
) -> tuple[Response, int, dict[str, str]]:
    """A link for the patient's family to follow the order (the treatment site's care team
    only). The URL carries the token and is shown this once; only its hash is kept."""
    with unit_of_work() as uow:
        link, token = family_status.make_link(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            days=body.expires_in_days,
            now=utcnow(),
        )
        uow.commit()
        result = _public(link, status_url(token))
    # the token is in this answer, once: no cache keeps it
    return jsonify(result.model_dump(mode="json")), 201, {"Cache-Control": "no-store"}


@api.delete(
    "/orders/<coi>/status-links/<int:link_id>", tags=[orders_tag], responses={200: StatusLinkPublic}
)
def revoke_status_link(path: StatusLinkPath) -> Response:
    """Revoke a status link at once: it answers 404 from now on, and its e-mails stop."""
    with unit_of_work() as uow:
        link = family_status.revoke_link(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            link_id=path.link_id,
            now=utcnow(),
        )
        uow.commit()
        result = _public(link)
    return jsonify(result.model_dump(mode="json"))


@api.post(
    "/orders/<coi>/status-news/<int:sequence>/discussed",
    tags=[orders_tag],
    responses={201: StatusNewsPublic},
)
def mark_news_discussed(path: StatusNewsPath, body: StatusNewsDiscussed) -> tuple[Response, int]:
    """A hold, a bag out of specification or a failed batch has been talked over with the
    family: their status page may show it now (on record: who, when, how)."""
    with unit_of_work() as uow:
        row = family_status.mark_discussed(
            uow.session,
            actor=current_actor(),
            coi=coi_value(path.coi),
            sequence=path.sequence,
            reason=body.reason,
            now=utcnow(),
        )
        uow.commit()
        result = StatusNewsPublic(sequence=path.sequence, discussed_at=row.discussed_at)
    return jsonify(result.model_dump(mode="json")), 201
