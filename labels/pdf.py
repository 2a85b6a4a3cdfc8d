"""PDF with reportlab: one label per page at the label's size, or a sheet of them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from labels.layout import FONT_PATH, Bars, Box, Layout, Matrix, Text
from labels.raster import runs
from labels.spec import LabelError

FONT = "IBMPlexMono-SemiBold"
SHEETS = {"a4": (A4[0] / mm, A4[1] / mm), "letter": (LETTER[0] / mm, LETTER[1] / mm)}
# Two columns of 4 in labels fit across A4 and letter only with narrow margins; the labels keep
# their own 2.5 mm margin inside, so nothing printed falls in a printer's unprintable edge.
SHEET_MARGIN = 2.0
SHEET_GAP = 2.0


def render_pdf(layouts: Sequence[Layout], title: str, sheet: str | None = None) -> bytes:
    if not layouts:
        raise LabelError("no labels to print")
    _register_font()
    out = io.BytesIO()
    canvas = Canvas(out, invariant=True)
    canvas.setTitle(title)
    canvas.setCreator("vein2vein")
    if sheet is None:
        for lay in layouts:
            canvas.setPageSize((lay.width * mm, lay.height * mm))
            _draw(canvas, lay, 0.0, lay.height)
            canvas.showPage()
    else:
        _sheets(canvas, layouts, sheet)
    canvas.save()
    return out.getvalue()


def _sheets(canvas: Canvas, layouts: Sequence[Layout], sheet: str) -> None:
    try:
        page_w, page_h = SHEETS[sheet]
    except KeyError:
        raise LabelError(f"unknown sheet {sheet!r}; choose one of {', '.join(SHEETS)}") from None
    w, h = layouts[0].width, layouts[0].height
    cols = int((page_w - 2 * SHEET_MARGIN + SHEET_GAP) // (w + SHEET_GAP))
    rows = int((page_h - 2 * SHEET_MARGIN + SHEET_GAP) // (h + SHEET_GAP))
    if cols < 1 or rows < 1:
        raise LabelError(f"a {w:g} x {h:g} mm label does not fit on a {sheet} sheet")
    per_page = cols * rows
    # centre the grid on the page
    left = (page_w - cols * w - (cols - 1) * SHEET_GAP) / 2
    head = (page_h - rows * h - (rows - 1) * SHEET_GAP) / 2
    for start in range(0, len(layouts), per_page):
        canvas.setPageSize((page_w * mm, page_h * mm))
        for index, lay in enumerate(layouts[start : start + per_page]):
            col, row = index % cols, index // cols
            x = left + col * (w + SHEET_GAP)
            top = head + row * (h + SHEET_GAP)
            canvas.setStrokeGray(0.6)
            canvas.setLineWidth(0.2)
            canvas.rect(x * mm, (page_h - top - h) * mm, w * mm, h * mm, stroke=1, fill=0)
            canvas.setStrokeGray(0)
            _draw(canvas, lay, x, page_h - top)
        canvas.showPage()


def _draw(canvas: Canvas, lay: Layout, left: float, top: float) -> None:
    """Draw a layout whose top-left corner is at (left, top) mm in PDF (bottom-up) space."""

    def rect(x: float, y: float, w: float, h: float, fill: bool) -> None:
        canvas.rect(
            (left + x) * mm,
            (top - y - h) * mm,
            w * mm,
            h * mm,
            stroke=0 if fill else 1,
            fill=1 if fill else 0,
        )

    for item in lay.items:
        if isinstance(item, Bars):
            for s, n in runs(item.pattern):
                rect(item.x + s * item.module, item.y, n * item.module, item.height, True)
        elif isinstance(item, Matrix):
            for r, row in enumerate(item.rows):
                for s, n in runs(row):
                    rect(
                        item.x + s * item.module,
                        item.y + r * item.module,
                        n * item.module,
                        item.module,
                        True,
                    )
        elif isinstance(item, Text):
            canvas.setFont(FONT, item.size * mm)
            canvas.drawString((left + item.x) * mm, (top - item.baseline) * mm, item.text)
        elif isinstance(item, Box):
            canvas.setLineWidth(item.stroke * mm)
            rect(item.x, item.y, item.width, item.height, False)


@cache
def _register_font() -> None:
    pdfmetrics.registerFont(TTFont(FONT, str(FONT_PATH)))
