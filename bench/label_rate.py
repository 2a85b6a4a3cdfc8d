"""Labels per second in each format, and what our layout costs over the bare libraries.

    .venv/bin/python bench/label_rate.py [--seconds 3]

For each format, renders labels for fresh identifiers for about --seconds and prints the rate.
"Bare" renders only what the label wraps: qrcode's PNG (or SVG) of the 2-D code plus
python-barcode's Code 128 of the DIN, with their own default layouts and text, no label.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import time
from collections.abc import Callable

import qrcode
import qrcode.image.svg
from barcode import Code128
from barcode.writer import ImageWriter, SVGWriter

import labels
from labels.layout import code128_pattern, qr_rows
from services.domain.identifiers import Coi, Din
from services.operations.labels import spec_for

COLLECTED = dt.datetime(2026, 11, 24, 14, 5, tzinfo=dt.UTC)
_numbers = itertools.count(1)


def fresh_spec() -> labels.LabelSpec:
    """A label for identifiers never rendered before, so no cache flatters the figures."""
    n = next(_numbers)
    return spec_for(
        Din.generate(fin="A9999", year=26, sequence=n),
        Coi.generate(fin="A9999", year=26, number=n),
        product="axi-cel",
        collected_at=COLLECTED,
        site="Northgate Hospital Apheresis Unit",
    )


def bare_png(spec: labels.LabelSpec) -> bytes:
    out = io.BytesIO()
    qrcode.make(spec.qr_payload).save(out)
    Code128(spec.din_barcode, writer=ImageWriter()).write(out)
    return out.getvalue()


def bare_svg(spec: labels.LabelSpec) -> bytes:
    out = io.BytesIO()
    qrcode.make(spec.qr_payload, image_factory=qrcode.image.svg.SvgPathImage).save(out)
    Code128(spec.din_barcode, writer=SVGWriter()).write(out)
    return out.getvalue()


def rate(render: Callable[[labels.LabelSpec], bytes], seconds: float) -> tuple[float, int]:
    count, size = 0, 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        size += len(render(fresh_spec()))
        count += 1
    return count / elapsed, size // max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[labels.LabelSpec], bytes]]] = [
        ("png 203 dpi", lambda s: labels.render(s, "png", dpi=203)),
        ("png 600 dpi", lambda s: labels.render(s, "png", dpi=600)),
        ("svg", lambda s: labels.render(s, "svg")),
        ("pdf", lambda s: labels.render(s, "pdf")),
        ("zpl 203 dpi", lambda s: labels.render(s, "zpl", dpi=203)),
        ("bare png (qrcode + python-barcode)", bare_png),
        ("bare svg (qrcode + python-barcode)", bare_svg),
    ]
    labels.render(fresh_spec(), "pdf")  # load the fonts once, as a running service has
    print(f"labels per second, 2x4in label, fresh identifiers each time ({args.seconds:g} s each)")
    for name, render in cases:
        per_second, size = rate(render, args.seconds)
        print(f"  {name:36} {per_second:9.1f} /s   {size:8d} bytes each")
        code128_pattern.cache_clear()
        qr_rows.cache_clear()


if __name__ == "__main__":
    main()
