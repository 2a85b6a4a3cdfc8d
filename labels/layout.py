"""The label laid out once, in millimetres from the top-left corner; every format draws this.

Code 128 bars come from python-barcode, the QR matrix from qrcode; we only place them. Quiet
zones (10 modules for Code 128, 4 for QR) lie inside the areas reserved for the codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import qrcode
from barcode import Code128
from qrcode.constants import ERROR_CORRECT_M

from labels.spec import (
    AUTOLOGOUS,
    SHIPPER_BANNER,
    LabelError,
    LabelSize,
    LabelSpec,
    ShipmentLabelSpec,
)

FONT_PATH = Path(__file__).with_name("fonts") / "IBMPlexMono-SemiBold.ttf"
# IBM Plex Mono: a dotted zero unlike O, a flagged 1 unlike I and l. Every glyph advances 600/1000
# of the em, so text width is known without the font.
ADVANCE = 0.6

MARGIN = 2.5
GAP = 2.0
CODE128_QUIET_MODULES = 10
QR_QUIET_MODULES = 4
MIN_WIDTH_MM, MIN_HEIGHT_MM = 60.0, 40.0


@dataclass(frozen=True, slots=True)
class Bars:
    """A Code 128 symbol: ``pattern`` is one character per module, '1' for a bar."""

    x: float
    y: float
    module: float
    height: float
    pattern: str
    data: str
    area_width: float  # the width reserved for it, quiet zones included


@dataclass(frozen=True, slots=True)
class Matrix:
    """A QR symbol: ``rows`` of dark (True) and light modules, quiet zone excluded."""

    x: float
    y: float
    module: float
    rows: tuple[tuple[bool, ...], ...]
    data: str
    area_size: float


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    baseline: float
    size: float  # the em, in mm
    text: str

    @property
    def width(self) -> float:
        return len(self.text) * ADVANCE * self.size


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    stroke: float


Item = Bars | Matrix | Text | Box


@dataclass(frozen=True, slots=True)
class Layout:
    width: float
    height: float
    items: tuple[Item, ...]


@cache
def code128_pattern(data: str) -> str:
    return str(Code128(data).build()[0])


@cache
def qr_rows(payload: str) -> tuple[tuple[bool, ...], ...]:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0)
    code.add_data(payload)
    code.make(fit=True)
    return tuple(tuple(bool(cell) for cell in row) for row in code.get_matrix())


def _check_size(size: LabelSize) -> tuple[float, float]:
    width, height = size.width_mm, size.height_mm
    if width < MIN_WIDTH_MM or height < MIN_HEIGHT_MM:
        raise LabelError(
            f"a label needs at least {MIN_WIDTH_MM:g} x {MIN_HEIGHT_MM:g} mm to stay scannable"
        )
    return width, height


def _codes(
    items: list[Item], *, width: float, height: float, linear: str, matrix: str
) -> tuple[float, float]:
    """The 2-D code top right and the Code 128 top left, across what the 2-D code leaves.
    Returns the column left of the 2-D code and the height of the bars."""
    qr_size = min(height * 0.48, width * 0.3)
    rows = qr_rows(matrix)
    qr_module = qr_size / (len(rows) + 2 * QR_QUIET_MODULES)
    qr_x = width - MARGIN - qr_size
    items.append(
        Matrix(
            x=qr_x + QR_QUIET_MODULES * qr_module,
            y=MARGIN + QR_QUIET_MODULES * qr_module,
            module=qr_module,
            rows=rows,
            data=matrix,
            area_size=qr_size,
        )
    )
    column = qr_x - GAP - MARGIN
    pattern = code128_pattern(linear)
    module = column / (len(pattern) + 2 * CODE128_QUIET_MODULES)
    bar_height = min(height * 0.24, 15.0)
    items.append(
        Bars(
            x=MARGIN + CODE128_QUIET_MODULES * module,
            y=MARGIN,
            module=module,
            height=bar_height,
            pattern=pattern,
            data=linear,
            area_width=column,
        )
    )
    return column, bar_height


def _banner(items: list[Item], *, width: float, height: float, text: str, above: float) -> None:
    banner_size = 3.6
    banner_height = banner_size * 1.5
    banner_top = height - MARGIN - banner_height
    if above > banner_top:
        raise LabelError("the label is too small for its text")
    items.append(Box(MARGIN, banner_top, width - 2 * MARGIN, banner_height, stroke=0.5))
    banner = Text(0, banner_top + banner_height / 2 + banner_size * 0.35, banner_size, text)
    size = banner_size if banner.width <= width - 2 * MARGIN - 2 else banner_size * 0.8
    banner = Text(0, banner.baseline, size, text)
    items.append(Text((width - banner.width) / 2, banner.baseline, size, text))


def layout(spec: LabelSpec | ShipmentLabelSpec, size: LabelSize) -> Layout:
    if isinstance(spec, ShipmentLabelSpec):
        return layout_shipment(spec, size)
    width, height = _check_size(size)
    items: list[Item] = []
    column, bar_height = _codes(
        items, width=width, height=height, linear=spec.din_barcode, matrix=spec.qr_payload
    )
    qr_size = min(height * 0.48, width * 0.3)

    # eye-readable DIN with its check character in a box
    y = MARGIN + bar_height + 1.0
    din_size = min(4.2, column / (len(spec.din_eye_readable) + 3) / ADVANCE)
    y += din_size
    din_text = Text(MARGIN + 1.0, y, din_size, spec.din_eye_readable)
    items += [din_text, *_boxed(din_text, spec.din_check_character)]

    # the chain of identity, under the DIN
    coi_size = min(3.2, din_size)
    y += coi_size * 1.6
    coi_text = Text(MARGIN + 1.0, y, coi_size, f"COI {spec.coi_eye_readable}")
    items += [coi_text, *_boxed(coi_text, spec.coi_check_character)]

    # what, when, where: full width, so below the 2-D code
    detail_size = 2.8
    y = max(y + detail_size * 1.3, MARGIN + qr_size + detail_size)
    indent = 1.0
    text_width = width - 2 * MARGIN - indent
    for caption, value in (
        ("Product  ", spec.product),
        (f"{spec.time_caption:9}", spec.collected_text),
        ("Site     ", spec.site),
    ):
        items.append(
            Text(MARGIN + 1.0, y, detail_size, _fit(f"{caption} {value}", text_width, detail_size))
        )
        y += detail_size * 1.3

    # the banner, across the foot of the label
    _banner(items, width=width, height=height, text=AUTOLOGOUS, above=y - detail_size)
    return Layout(width=width, height=height, items=tuple(items))


def layout_shipment(spec: ShipmentLabelSpec, size: LabelSize) -> Layout:
    """A shipper's label: the code to scan, then where it goes and what it holds."""
    width, height = _check_size(size)
    items: list[Item] = []
    column, bar_height = _codes(
        items, width=width, height=height, linear=spec.code, matrix=spec.code
    )
    y = MARGIN + bar_height + 1.0
    code_size = min(4.6, column / (len(spec.code) + 1) / ADVANCE)
    y += code_size
    items.append(Text(MARGIN + 1.0, y, code_size, spec.code))
    qr_size = min(height * 0.48, width * 0.3)
    detail_size = 2.5
    y = max(y + detail_size * 1.4, MARGIN + qr_size + detail_size)
    text_width = width - 2 * MARGIN - 1.0
    cois = ", ".join(spec.cois) or "-"
    carrier = spec.carrier or "whichever picks it up"
    for caption, value in (
        ("To     ", spec.destination),
        ("From   ", spec.origin),
        ("Courier", f"{carrier}  Shipper {spec.shipper}"),
        ("Bags   ", f"{spec.bags}  COI {cois}"),
    ):
        items.append(
            Text(MARGIN + 1.0, y, detail_size, _fit(f"{caption} {value}", text_width, detail_size))
        )
        y += detail_size * 1.3
    _banner(items, width=width, height=height, text=SHIPPER_BANNER, above=y - detail_size)
    return Layout(width=width, height=height, items=tuple(items))


def _boxed(after: Text, character: str) -> list[Item]:
    """The check character, in a box, one space after ``after``."""
    x = after.x + after.width + ADVANCE * after.size
    pad = after.size * 0.18
    glyph = Text(x, after.baseline, after.size, character)
    box = Box(
        x - pad,
        after.baseline - after.size * 0.85,
        glyph.width + 2 * pad,
        after.size * 1.1,
        stroke=max(0.25, after.size * 0.06),
    )
    return [glyph, box]


def _fit(text: str, width: float, size: float) -> str:
    room = int(width / (ADVANCE * size))
    return text if len(text) <= room else text[: room - 1] + "\u2026"
