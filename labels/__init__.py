"""Bag labels: a label spec in, PNG/SVG/PDF/ZPL bytes out. Pure: imports nothing of ours.

Every label carries the DIN as Code 128 in its ISBT barcode form, a QR code with the DIN and the
chain of identity (the text `parse_scan` reads back), the DIN eye-readable with its check
character in a box, the COI with its check character, product, collection time, site and
"AUTOLOGOUS USE ONLY".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from labels.layout import layout
from labels.pdf import SHEETS, render_pdf
from labels.raster import render_png
from labels.spec import (
    DEFAULT_SIZE,
    SIZES,
    LabelError,
    LabelSize,
    LabelSpec,
    ShipmentLabelSpec,
    label_size,
)
from labels.vector import render_svg
from labels.zpl import DOTS_PER_MM, render_zpl

Format = Literal["png", "svg", "pdf", "zpl"]
FORMATS: tuple[Format, ...] = ("png", "svg", "pdf", "zpl")
MEDIA_TYPES: dict[Format, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "zpl": "application/x-zpl",
}


def render(
    spec: LabelSpec | ShipmentLabelSpec,
    fmt: Format,
    *,
    size: LabelSize = DEFAULT_SIZE,
    dpi: int = 203,
) -> bytes:
    """One label in one format. ``dpi`` applies to PNG (150-1200) and ZPL (203, 300, 600)."""
    lay = layout(spec, size)
    if fmt == "png":
        return render_png(lay, dpi)
    if fmt == "svg":
        return render_svg(lay, title=_title(spec))
    if fmt == "pdf":
        return render_pdf([lay], title=_title(spec))
    if fmt == "zpl":
        return render_zpl(lay, dpi)
    raise LabelError(f"unknown label format {fmt!r}; choose one of {', '.join(FORMATS)}")


def render_sheet(
    specs: Sequence[LabelSpec],
    *,
    size: LabelSize = DEFAULT_SIZE,
    sheet: str | None = None,
    title: str = "labels",
) -> bytes:
    """A PDF of many labels: one per page at label size, or laid out on A4/letter sheets."""
    return render_pdf([layout(spec, size) for spec in specs], title=title, sheet=sheet)


def _title(spec: LabelSpec | ShipmentLabelSpec) -> str:
    if isinstance(spec, ShipmentLabelSpec):
        return f"Shipment {spec.code}: {spec.origin} to {spec.destination}"
    return (
        f"DIN {spec.din_eye_readable} {spec.din_check_character} - "
        f"COI {spec.coi_eye_readable} {spec.coi_check_character}"
    )


__all__ = [
    "DOTS_PER_MM",
    "FORMATS",
    "MEDIA_TYPES",
    "SHEETS",
    "SIZES",
    "LabelError",
    "LabelSize",
    "LabelSpec",
    "ShipmentLabelSpec",
    "label_size",
    "render",
    "render_sheet",
]
