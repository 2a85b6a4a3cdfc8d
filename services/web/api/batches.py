"""Manufacturing batches: open one from an order's received bags, move it step by step, fill
its product bags, release or fail it (QA)."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import Tag

from services.domain.identifiers import batch_number
from services.operations import batches as batch_ops
from services.operations.queries import coi_value
from services.web import scanning  # the module: scanning imports this package in turn
from services.web.api.blueprint import api
from services.web.api.present import batch_public
from services.web.api.schemas import (
    BatchCreate,
    BatchList,
    BatchPath,
    BatchPublic,
    BatchQuery,
    BatchStatusUpdate,
    ProductsCreate,
)
from services.web.state import current_actor, max_clock_skew, unit_of_work, utcnow

tag = Tag(name="batches", description="Manufacturing batches and their product bags")


@api.post("/batches", tags=[tag], responses={201: BatchPublic})
def open_batch(body: BatchCreate) -> tuple[Response, int]:
    """Open a batch from the order's received apheresis bags (start_manufacturing for each)."""
    actor = current_actor()
    with unit_of_work() as uow:
        batch = batch_ops.open_batch(
            uow.session,
            actor=actor,
            coi=coi_value(body.coi),
            units=body.units,
            now=utcnow(),
            occurred_at=body.occurred_at,
            max_clock_skew=max_clock_skew(),
        )
        uow.commit()
        assert batch.id is not None
        result = batch_public(uow.session, batch_ops.batch_record(uow.session, actor, batch.id))
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/batches", tags=[tag], responses={200: BatchList})
def list_batches(query: BatchQuery) -> Response:
    """The batches of the orders you may see, newest first (optionally in one state)."""
    actor = current_actor()
    with unit_of_work() as uow:
        records = batch_ops.visible_batches(uow.session, actor, state=query.state)
        result = BatchList(batches=[batch_public(uow.session, r) for r in records])
    return jsonify(result.model_dump(mode="json"))


@api.get("/batches/<batch>", tags=[tag], responses={200: BatchPublic})
def read_batch(path: BatchPath) -> Response:
    """A batch: its steps with who and when, its apheresis bags and its product bags."""
    actor = current_actor()
    with unit_of_work() as uow:
        record = batch_ops.batch_record(uow.session, actor, batch_number(path.batch))
        result = batch_public(uow.session, record)
    return jsonify(result.model_dump(mode="json"))


@api.post("/batches/<batch>/status", tags=[tag], responses={200: BatchPublic})
def change_status(path: BatchPath, body: BatchStatusUpdate) -> Response:
    """The next step, QA release (after QC testing, signed in the act: `signature`) or
    failure (with a reason)."""
    actor = current_actor()
    number = batch_number(path.batch)
    signers = scanning.signers_for(
        actor,
        actor.site.code,
        scanning.Credentials(
            password=body.signature.password if body.signature else None,
            witness_email=body.witness.email if body.witness else None,
            witness_password=body.witness.password if body.witness else None,
        ),
    )
    with unit_of_work() as uow:
        batch_ops.change_status(
            uow.session,
            actor=actor,
            number=number,
            status=body.status,
            reason=body.reason,
            now=utcnow(),
            occurred_at=body.occurred_at,
            max_clock_skew=max_clock_skew(),
            signers=signers,
        )
        uow.commit()
        result = batch_public(uow.session, batch_ops.batch_record(uow.session, actor, number))
    return jsonify(result.model_dump(mode="json"))


@api.post("/batches/<batch>/products", tags=[tag], responses={201: BatchPublic})
def add_products(path: BatchPath, body: ProductsCreate) -> tuple[Response, int]:
    """Register the product bags filled from the batch: new DINs on the order's COI."""
    actor = current_actor()
    number = batch_number(path.batch)
    with unit_of_work() as uow:
        batch_ops.add_products(
            uow.session,
            actor=actor,
            number=number,
            count=body.count,
            volume_ml=body.volume_ml,
            now=utcnow(),
            filled_at=body.filled_at,
            max_clock_skew=max_clock_skew(),
            expires_at=body.expires_at,
        )
        uow.commit()
        result = batch_public(uow.session, batch_ops.batch_record(uow.session, actor, number))
    return jsonify(result.model_dump(mode="json")), 201
