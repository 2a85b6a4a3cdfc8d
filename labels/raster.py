"""PNG at a stated DPI. Code modules are snapped to whole pixels, centred in their areas."""

from __future__ import annotations

import io
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from labels.layout import (
    CODE128_QUIET_MODULES,
    FONT_PATH,
    QR_QUIET_MODULES,
    Bars,
    Box,
    Layout,
    Matrix,
    Text,
)
from labels.spec import LabelError

MIN_DPI, MAX_DPI = 150, 1200


def render_png(lay: Layout, dpi: int) -> bytes:
    image = rasterize(lay, dpi)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi, dpi), optimize=False)
    return out.getvalue()


def rasterize(lay: Layout, dpi: int) -> Image.Image:
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise LabelError(f"dpi must be between {MIN_DPI} and {MAX_DPI} for a scannable label")
    ppmm = dpi / 25.4
    image = Image.new("L", (round(lay.width * ppmm), round(lay.height * ppmm)), 255)
    draw = ImageDraw.Draw(image)
    for item in lay.items:
        if isinstance(item, Bars):
            _bars(draw, item, ppmm)
        elif isinstance(item, Matrix):
            _matrix(draw, item, ppmm)
        elif isinstance(item, Text):
            draw.text(
                (item.x * ppmm, item.baseline * ppmm),
                item.text,
                font=_font(round(item.size * ppmm)),
                fill=0,
                anchor="ls",
            )
        elif isinstance(item, Box):
            draw.rectangle(
                [
                    round(item.x * ppmm),
                    round(item.y * ppmm),
                    round((item.x + item.width) * ppmm),
                    round((item.y + item.height) * ppmm),
                ],
                outline=0,
                width=max(1, round(item.stroke * ppmm)),
            )
    return image


@cache
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), max(1, pixels))


def _bars(draw: ImageDraw.ImageDraw, bars: Bars, ppmm: float) -> None:
    module = max(1, int(bars.module * ppmm))
    area_x = (bars.x - CODE128_QUIET_MODULES * bars.module) * ppmm
    left = round(area_x + (bars.area_width * ppmm - len(bars.pattern) * module) / 2)
    top, bottom = round(bars.y * ppmm), round((bars.y + bars.height) * ppmm) - 1
    for start, length in runs(bars.pattern):
        x = left + start * module
        draw.rectangle([x, top, x + length * module - 1, bottom], fill=0)


def _matrix(draw: ImageDraw.ImageDraw, matrix: Matrix, ppmm: float) -> None:
    module = max(1, int(matrix.module * ppmm))
    side = len(matrix.rows) * module
    area_x = (matrix.x - QR_QUIET_MODULES * matrix.module) * ppmm
    area_y = (matrix.y - QR_QUIET_MODULES * matrix.module) * ppmm
    left = round(area_x + (matrix.area_size * ppmm - side) / 2)
    top = round(area_y + (matrix.area_size * ppmm - side) / 2)
    for r, row in enumerate(matrix.rows):
        y = top + r * module
        for start, length in runs(row):
            x = left + start * module
            draw.rectangle([x, y, x + length * module - 1, y + module - 1], fill=0)


def runs(cells: str | tuple[bool, ...]) -> list[tuple[int, int]]:
    """(start, length) of each run of dark modules ('1' or True)."""
    found: list[tuple[int, int]] = []
    start = None
    for index, cell in enumerate(cells):
        dark = cell is True or cell == "1"
        if dark and start is None:
            start = index
        elif not dark and start is not None:
            found.append((start, index - start))
            start = None
    if start is not None:
        found.append((start, len(cells) - start))
    return found
