"""ZPL II for thermal label printers: the printer draws the barcodes from their data."""

from __future__ import annotations

from labels.layout import CODE128_QUIET_MODULES, QR_QUIET_MODULES, Bars, Box, Layout, Matrix, Text
from labels.spec import LabelError

DOTS_PER_MM = {203: 8, 300: 12, 600: 24}


def render_zpl(lay: Layout, dpi: int) -> bytes:
    try:
        dpmm = DOTS_PER_MM[dpi]
    except KeyError:
        raise LabelError(
            f"thermal printers print at {', '.join(map(str, DOTS_PER_MM))} dpi, not {dpi}"
        ) from None

    def dots(mm: float) -> int:
        return round(mm * dpmm)

    lines = ["^XA", "^CI28", f"^PW{dots(lay.width)}", f"^LL{dots(lay.height)}", "^LH0,0"]
    for item in lay.items:
        if isinstance(item, Bars):
            module = max(1, int(item.module * dpmm))
            area_x = item.x - CODE128_QUIET_MODULES * item.module
            x = dots(area_x) + (dots(item.area_width) - len(item.pattern) * module) // 2
            height = dots(item.height)
            # automatic subset selection (mode A) encodes the same data python-barcode does
            lines.append(
                f"^FO{x},{dots(item.y)}^BY{module},3,{height}^BCN,{height},N,N,N,A^FD{item.data}^FS"
            )
        elif isinstance(item, Matrix):
            magnification = min(10, max(1, int(item.module * dpmm)))
            side = len(item.rows) * magnification
            x = dots(item.x - QR_QUIET_MODULES * item.module) + (dots(item.area_size) - side) // 2
            y = dots(item.y - QR_QUIET_MODULES * item.module) + (dots(item.area_size) - side) // 2
            # model 2, error correction M, automatic input mode
            lines.append(f"^FO{x},{y}^BQN,2,{magnification}^FDMA,{item.data}^FS")
        elif isinstance(item, Text):
            top = dots(item.baseline - item.size * 0.75)
            lines.append(
                f"^FO{dots(item.x)},{top}^A0N,{dots(item.size)},"
                f"{dots(item.size * 0.6)}^FH^FD{_field(item.text)}^FS"
            )
        elif isinstance(item, Box):
            lines.append(
                f"^FO{dots(item.x)},{dots(item.y)}^GB{dots(item.width)},"
                f"{dots(item.height)},{max(1, dots(item.stroke))}^FS"
            )
    lines += ["^PQ1", "^XZ"]
    return ("\n".join(lines) + "\n").encode()


def _field(text: str) -> str:
    """Escape ZPL's command characters in field data (^FH: '_' + two hex digits)."""
    return text.replace("_", "_5F").replace("^", "_5E").replace("~", "_7E")
