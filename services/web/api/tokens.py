"""Your API tokens: list them, revoke one. New ones come from `vein2vein token create`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response, jsonify
from flask_openapi3 import Tag

if TYPE_CHECKING:
    from services.db.models import ApiToken
from services.operations import admin
from services.web.api.blueprint import api
from services.web.api.schemas import TokenList, TokenPath, TokenPublic
from services.web.state import current_actor, unit_of_work, utcnow

tag = Tag(name="tokens", description="Your API tokens")


@api.get("/tokens", tags=[tag], responses={200: TokenList})
def list_tokens() -> Response:
    """Your tokens (never the tokens themselves: only their prefix)."""
    with unit_of_work() as uow:
        rows = admin.tokens_of(uow.session, email=current_actor().email)
    return jsonify(TokenList(tokens=[_public(row) for row in rows]).model_dump(mode="json"))


@api.delete("/tokens/<int:token_id>", tags=[tag], responses={200: TokenPublic})
def revoke_token(path: TokenPath) -> Response:
    """Revoke one of your tokens. It stops working with the next request."""
    with unit_of_work() as uow:
        row = admin.revoke_token(
            uow.session, actor=current_actor(), token_id=path.token_id, now=utcnow()
        )
        uow.commit()
    return jsonify(_public(row).model_dump(mode="json"))


def _public(row: ApiToken) -> TokenPublic:
    assert row.id is not None
    return TokenPublic(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
