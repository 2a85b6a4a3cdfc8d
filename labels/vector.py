"""SVG, sized in millimetres. Text is drawn as glyph outlines, so it reads the same everywhere."""

from __future__ import annotations

from functools import cache
from xml.sax.saxutils import escape

from fontTools.pens.svgPathPen import SVGPathPen
from fontTools.pens.transformPen import TransformPen
from fontTools.ttLib import TTFont

from labels.layout import ADVANCE, FONT_PATH, Bars, Box, Layout, Matrix, Text
from labels.raster import runs


def render_svg(lay: Layout, title: str) -> bytes:
    glyphs: dict[str, str] = {}  # id -> outline at the origin, defined once, used per character
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(lay.width)}mm" '
        f'height="{_n(lay.height)}mm" viewBox="0 0 {_n(lay.width)} {_n(lay.height)}" '
        'role="img" shape-rendering="crispEdges">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{_n(lay.width)}" height="{_n(lay.height)}" fill="#fff"/>',
    ]
    for item in lay.items:
        if isinstance(item, Bars):
            d = "".join(
                f"M{_n(item.x + s * item.module)} {_n(item.y)}h{_n(n * item.module)}"
                f"v{_n(item.height)}h{_n(-n * item.module)}z"
                for s, n in runs(item.pattern)
            )
            parts.append(f'<path class="code128" data-content="{escape(item.data)}" d="{d}"/>')
        elif isinstance(item, Matrix):
            d = "".join(
                f"M{_n(item.x + s * item.module)} {_n(item.y + r * item.module)}"
                f"h{_n(n * item.module)}v{_n(item.module)}h{_n(-n * item.module)}z"
                for r, row in enumerate(item.rows)
                for s, n in runs(row)
            )
            parts.append(f'<path class="qr" d="{d}"/>')
        elif isinstance(item, Text):
            parts.append(_text(item, glyphs))
        elif isinstance(item, Box):
            parts.append(
                f'<rect x="{_n(item.x)}" y="{_n(item.y)}" width="{_n(item.width)}" '
                f'height="{_n(item.height)}" fill="none" stroke="#000" '
                f'stroke-width="{_n(item.stroke)}"/>'
            )
    defs = "".join(f'<path id="{key}" d="{d}"/>' for key, d in glyphs.items())
    parts.insert(4, f"<defs>{defs}</defs>")
    parts.append("</svg>")
    return "\n".join(parts).encode()


def _text(text: Text, glyphs: dict[str, str]) -> str:
    uses = []
    for index, char in enumerate(text.text):
        outline = _glyph(char, text.size)
        if not outline:
            continue
        key = f"g{ord(char):x}-{_n(text.size).replace('.', '_')}"
        glyphs.setdefault(key, outline)
        x = text.x + index * ADVANCE * text.size
        uses.append(f'<use href="#{key}" x="{_n(x)}" y="{_n(text.baseline)}"/>')
    return f'<g class="text" aria-label="{escape(text.text)}">{"".join(uses)}</g>'


@cache
def _glyph(char: str, size: float) -> str:
    """The outline of ``char`` at ``size`` mm, its origin on the baseline at x = 0."""
    font = _font()
    name = font.getBestCmap().get(ord(char))
    if name is None or char.isspace():
        return ""
    glyphs = font.getGlyphSet()
    scale = size / font["head"].unitsPerEm
    pen = SVGPathPen(glyphs, ntos=_n)
    glyphs[name].draw(TransformPen(pen, (scale, 0, 0, -scale, 0, 0)))
    return str(pen.getCommands())


@cache
def _font() -> TTFont:
    return TTFont(str(FONT_PATH))


def _n(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")
