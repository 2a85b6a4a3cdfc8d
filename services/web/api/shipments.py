"""Shipments: open one with its manifest, read it."""

from __future__ import annotations

from flask import Response, jsonify

from services.operations import shipments as shipment_ops
from services.web.api.blueprint import api, shipments_tag
from services.web.api.present import shipment_public
from services.web.api.schemas import (
    ShipmentCancel,
    ShipmentCreate,
    ShipmentPath,
    ShipmentPublic,
)
from services.web.state import current_actor, state, unit_of_work, utcnow


@api.post("/shipments", tags=[shipments_tag], responses={201: ShipmentPublic})
def create_shipment(body: ShipmentCreate) -> tuple[Response, int]:
    """Open a shipment from your site, listing the packed bags it carries."""
    with unit_of_work() as uow:
        shipment = shipment_ops.create_shipment(
            uow.session,
            actor=current_actor(),
            origin=body.origin,
            destination=body.destination,
            shipper_id=body.shipper_id,
            units=body.units,
            carrier=body.carrier,
            now=utcnow(),
            require_registered_shipper=state().settings.require_registered_shippers,
        )
        uow.commit()
        result = shipment_public(uow.session, shipment)
    return jsonify(result.model_dump(mode="json")), 201


@api.get("/shipments/<shipment>", tags=[shipments_tag], responses={200: ShipmentPublic})
def read_shipment(path: ShipmentPath) -> Response:
    """A shipment and its manifest."""
    actor = current_actor()
    with unit_of_work() as uow:
        shipment = shipment_ops.visible_shipment(uow.session, actor, path.shipment)
        result = shipment_public(uow.session, shipment)
    return jsonify(result.model_dump(mode="json"))


@api.post("/shipments/<shipment>/reconcile", tags=[shipments_tag], responses={200: ShipmentPublic})
def reconcile_shipment(path: ShipmentPath) -> Response:
    """Close the receiving site's bag-by-bag check: manifest bags not received are reported
    missing (on the shipment, and to each order's subscribers)."""
    with unit_of_work() as uow:
        shipment = shipment_ops.reconcile(
            uow.session, actor=current_actor(), code=path.shipment, now=utcnow()
        )
        uow.commit()
        result = shipment_public(uow.session, shipment)
    return jsonify(result.model_dump(mode="json"))


@api.post("/shipments/<shipment>/cancel", tags=[shipments_tag], responses={200: ShipmentPublic})
def cancel_shipment(path: ShipmentPath, body: ShipmentCancel) -> Response:
    """Cancel a shipment opened by mistake, before pickup, with a reason (its origin's shipping
    staff): each bag goes back to the state it had before packing (an event on each), and the
    shipper is free again."""
    with unit_of_work() as uow:
        shipment = shipment_ops.cancel_shipment(
            uow.session, actor=current_actor(), code=path.shipment, reason=body.reason, now=utcnow()
        )
        uow.commit()
        result = shipment_public(uow.session, shipment)
    return jsonify(result.model_dump(mode="json"))
