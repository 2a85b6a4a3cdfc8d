"""Bag labels: one bag's label in any format, or a PDF of every bag of an order."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from flask import Response
from pydantic import BaseModel
from sqlmodel import Field, SQLModel

import labels
from services.operations.access import order_by_coi
from services.operations.labels import label_spec, record_download
from services.operations.queries import coi_value, unit_by_din, units_of_order
from services.web.api.blueprint import api, orders_tag
from services.web.api.schemas import OrderPath, UnitPath
from services.web.state import current_actor, unit_of_work, utcnow

Size = Literal["2x4in", "100x50mm", "100x100mm"]


class LabelQuery(SQLModel):
    format: Literal["png", "svg", "pdf", "zpl"] = "pdf"
    size: Size = Field(default="2x4in", description="Label stock: 2x4in, 100x50mm or 100x100mm")
    dpi: int = Field(
        default=203, ge=150, le=1200, description="PNG resolution; ZPL: 203, 300 or 600"
    )


class SheetQuery(SQLModel):
    size: Size = "2x4in"
    sheet: Literal["a4", "letter"] | None = Field(
        default=None, description="Lay the labels out on A4 or letter pages; default one per page"
    )


BINARY: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    200: {"description": "The label (image/png, image/svg+xml, application/pdf or ZPL)"}
}


@api.get("/units/<din>/label", tags=[orders_tag], responses=BINARY)
def unit_label(path: UnitPath, query: LabelQuery) -> Response:
    """A bag's label: Code 128 DIN, QR code with DIN and COI, eye-readable text. A download
    can be printed, so it is on the order's record like a print (who, when): a label check
    (verify_label) accepts only a bag whose label was printed or downloaded."""
    actor = current_actor()
    with unit_of_work() as uow:
        unit, order = unit_by_din(uow.session, actor, path.din)
        spec = label_spec(uow.session, unit, order)
        record_download(uow.session, actor=actor, unit=unit, order=order, via="API", now=utcnow())
        uow.commit()
    content = labels.render(spec, query.format, size=labels.label_size(query.size), dpi=query.dpi)
    return _file(content, labels.MEDIA_TYPES[query.format], f"label-{unit.din}.{query.format}")


@api.get("/orders/<coi>/labels", tags=[orders_tag], responses=BINARY)
def order_labels(path: OrderPath, query: SheetQuery) -> Response:
    """A PDF with the label of every bag of the order (each on record as a download)."""
    actor = current_actor()
    with unit_of_work() as uow:
        order = order_by_coi(uow.session, actor, coi_value(path.coi))
        bags = units_of_order(uow.session, order)
        specs = [label_spec(uow.session, unit, order) for unit in bags]
        for unit in bags:
            record_download(
                uow.session, actor=actor, unit=unit, order=order, via="API sheet", now=utcnow()
            )
        uow.commit()
    content = labels.render_sheet(
        specs, size=labels.label_size(query.size), sheet=query.sheet, title=f"labels {order.coi}"
    )
    return _file(content, "application/pdf", f"labels-{order.coi}.pdf")


def _file(content: bytes, media_type: str, filename: str) -> Response:
    response = Response(content, mimetype=media_type)
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
