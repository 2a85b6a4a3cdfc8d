"""Labels read back exactly: every raster is decoded by a real decoder (zxing-cpp)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET
from typing import Any

import pypdfium2
import pytest
import zxingcpp
from fontTools.ttLib import TTFont
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

import labels
from labels.layout import ADVANCE, FONT_PATH, MARGIN, Text, layout
from services.domain.identifiers import Coi, Din, label_payload
from services.operations.labels import spec_for as service_spec

fins = st.from_regex(r"[A-NP-Z1-9][0-9]{4}", fullmatch=True)
years = st.integers(min_value=0, max_value=99)
COLLECTED = dt.datetime(2026, 11, 24, 14, 5, tzinfo=dt.UTC)


def spec_for(din: Din, coi_: Coi, /, **overrides: Any) -> labels.LabelSpec:
    """The service's label for these identifiers, with fields replaced (and re-checked)."""
    spec = service_spec(
        din,
        coi_,
        product="axi-cel",
        collected_at=COLLECTED,
        site="Northgate Hospital Apheresis Unit",
    )
    return dataclasses.replace(spec, **overrides)


def decoded(image: Image.Image) -> dict[str, str]:
    """What a standard decoder reads off the image, by symbology."""
    found: dict[str, str] = {}
    for result in zxingcpp.read_barcodes(image):
        name = str(result.format)
        assert name not in found, f"two {name} symbols on one label"
        found[name] = result.text
    return found


def assert_reads_back(image: Image.Image, din: Din, coi: Coi) -> None:
    assert decoded(image) == {
        "Code 128": din.barcode,
        "QR Code": label_payload(din, coi),
    }


def pdf_pages(content: bytes, dpi: int = 203) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(content)
    return [page.render(scale=dpi / 72).to_pil() for page in document]


def din_with(check: str) -> Din:
    return next(
        d
        for n in range(1, 20_000)
        if (d := Din.generate(fin="A9999", year=26, sequence=n)).check_character == check
    )


def coi_with(check: str) -> Coi:
    return next(
        c
        for n in range(1, 20_000)
        if (c := Coi.generate(fin="A9999", year=26, number=n)).check_character == check
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fin=fins,
    year=years,
    sequence=st.integers(1, 999_999),
    number=st.integers(1, 36**6 - 1),
    size=st.sampled_from(sorted(labels.SIZES)),
)
def test_every_format_reads_back_exactly_for_any_identifier(
    fin: str, year: int, sequence: int, number: int, size: str
) -> None:
    din = Din.generate(fin=fin, year=year, sequence=sequence)
    coi = Coi.generate(fin=fin, year=year, number=number)
    spec, stock = spec_for(din, coi), labels.SIZES[size]
    png = labels.render(spec, "png", size=stock, dpi=203)
    assert_reads_back(Image.open(io.BytesIO(png)), din, coi)
    assert_reads_back(svg_painted(labels.render(spec, "svg", size=stock)), din, coi)
    (page,) = pdf_pages(labels.render(spec, "pdf", size=stock), dpi=203)
    assert_reads_back(page, din, coi)
    zpl = labels.render(spec, "zpl", size=stock).decode()
    assert f"^FD{din.barcode}^FS" in zpl
    assert f"^FDMA,{label_payload(din, coi)}^FS" in zpl


@pytest.mark.parametrize("check", ["*", "O", "0", "I", "1"])
def test_awkward_check_characters_on_every_format(check: str) -> None:
    din, coi = din_with(check), coi_with(check)
    spec = spec_for(din, coi)
    assert_reads_back(Image.open(io.BytesIO(labels.render(spec, "png"))), din, coi)
    (page,) = pdf_pages(labels.render(spec, "pdf"))
    assert_reads_back(page, din, coi)
    assert_reads_back(svg_painted(labels.render(spec, "svg")), din, coi)
    zpl = labels.render(spec, "zpl").decode()
    assert f"^FD{check}^FS" in zpl


@pytest.mark.parametrize("dpi", [150, 203, 300, 600])
def test_png_size_and_resolution_are_exact(dpi: int) -> None:
    din, coi = din_with("A"), coi_with("B")
    for size in labels.SIZES.values():
        image = Image.open(io.BytesIO(labels.render(spec_for(din, coi), "png", size=size, dpi=dpi)))
        assert image.size == (round(size.width_mm * dpi / 25.4), round(size.height_mm * dpi / 25.4))
        assert round(image.info["dpi"][0]) == dpi
        assert_reads_back(image, din, coi)


@pytest.mark.parametrize("size", sorted(labels.SIZES))
def test_pdf_page_is_the_label_size_and_reads_back_at_203_dpi(size: str) -> None:
    din, coi = din_with("7"), coi_with("Z")
    label = labels.SIZES[size]
    content = labels.render(spec_for(din, coi), "pdf", size=label)
    document = pypdfium2.PdfDocument(content)
    width_pt, height_pt = document[0].get_size()
    assert width_pt * 25.4 / 72 == pytest.approx(label.width_mm, abs=0.01)
    assert height_pt * 25.4 / 72 == pytest.approx(label.height_mm, abs=0.01)
    (page,) = pdf_pages(content, dpi=203)
    assert_reads_back(page, din, coi)


def test_pdf_embeds_the_font_that_tells_zero_from_o() -> None:
    content = labels.render(spec_for(din_with("0"), coi_with("O")), "pdf")
    assert b"IBMPlexMono-SemiBold" in content
    assert b"FontFile2" in content  # embedded TrueType: prints the same everywhere


@pytest.mark.parametrize("sheet", [None, "a4", "letter"])
def test_a_sheet_of_many_labels_reads_back(sheet: str | None) -> None:
    bags = [
        (
            Din.generate(fin="B1234", year=26, sequence=n),
            Coi.generate(fin="B1234", year=26, number=n),
        )
        for n in range(1, 13)
    ]
    content = labels.render_sheet([spec_for(d, c) for d, c in bags], sheet=sheet)
    pages = pdf_pages(content, dpi=203)
    if sheet is None:
        assert len(pages) == len(bags)
    else:
        assert len(pages) == 2  # ten 2x4in labels fit on one A4 or letter page
    read = [result.text for page in pages for result in zxingcpp.read_barcodes(page)]
    expected = [d.barcode for d, _ in bags] + [label_payload(d, c) for d, c in bags]
    assert sorted(read) == sorted(expected)


def svg_painted(content: bytes, dpi: int = 203) -> Image.Image:
    """Paint the SVG's code paths (rectangles: M x y h w v h h -w z) at ``dpi`` for a decoder."""
    root = ET.fromstring(content)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    ppmm = dpi / 25.4
    image = Image.new("L", (round(width * ppmm), round(height * ppmm)), 255)
    draw = ImageDraw.Draw(image)
    for path in root.findall("svg:path", ns):
        if path.attrib.get("class") not in ("code128", "qr"):
            continue
        for x, y, w, h in re.findall(
            r"M([\d.]+) ([\d.]+)h([\d.]+)v([\d.]+)h-[\d.]+z", path.attrib["d"]
        ):
            x0, y0 = float(x) * ppmm, float(y) * ppmm
            draw.rectangle(
                [
                    round(x0),
                    round(y0),
                    round(x0 + float(w) * ppmm) - 1,
                    round(y0 + float(h) * ppmm) - 1,
                ],
                fill=0,
            )
    return image


def test_svg_is_sized_in_millimetres_and_its_codes_read_back() -> None:
    din, coi = din_with("*"), coi_with("*")
    for size in labels.SIZES.values():
        content = labels.render(spec_for(din, coi), "svg", size=size)
        root = ET.fromstring(content)
        assert root.attrib["width"] == f"{size.width_mm:g}mm"
        assert root.attrib["height"] == f"{size.height_mm:g}mm"
        assert_reads_back(svg_painted(content), din, coi)
        title = root.find("{http://www.w3.org/2000/svg}title")
        assert title is not None
        assert din.eye_readable in (title.text or "")
        texts = [
            group.attrib["aria-label"]
            for group in root.iter("{http://www.w3.org/2000/svg}g")
            if group.attrib.get("class") == "text"
        ]
        assert din.eye_readable in texts
        assert din.check_character in texts
        assert labels.spec.AUTOLOGOUS in texts


def test_zpl_holds_the_commands_and_data_a_printer_needs() -> None:
    din, coi = din_with("O"), coi_with("0")
    spec = spec_for(din, coi, site="Lab ^A ~B _C")
    zpl = labels.render(spec, "zpl", dpi=203).decode()
    assert zpl.startswith("^XA\n")
    assert zpl.rstrip().endswith("^XZ")
    assert "^PW813\n" in zpl  # 101.6 mm at 8 dots/mm
    assert "^LL406\n" in zpl
    assert re.search(rf"\^BCN,\d+,N,N,N,A\^FD{re.escape(din.barcode)}\^FS", zpl)
    assert re.search(rf"\^BQN,2,\d+\^FDMA,{re.escape(label_payload(din, coi))}\^FS", zpl)
    assert f"^FD{din.eye_readable}^FS" in zpl
    assert f"^FD{din.check_character}^FS" in zpl
    assert f"^FDCOI {spec.coi_eye_readable}^FS" in zpl
    assert "^FDAUTOLOGOUS USE ONLY^FS" in zpl
    assert zpl.count("^GB") == 3  # the two check-character boxes and the banner
    assert "Lab _5EA _7EB _5FC" in zpl  # command characters in data are escaped
    assert "^A ~B" not in zpl
    assert "^PW1219\n" in labels.render(spec, "zpl", dpi=300).decode()


def test_text_stays_inside_the_label() -> None:
    spec = spec_for(din_with("A"), coi_with("A"), site="X" * 200, product="P" * 80)
    for size in labels.SIZES.values():
        for item in layout(spec, size).items:
            if isinstance(item, Text):
                assert item.x >= MARGIN
                assert item.x + item.width <= size.width_mm - MARGIN + 1e-6
                assert item.baseline <= size.height_mm - MARGIN


def test_every_glyph_advances_as_the_layout_assumes() -> None:
    font = TTFont(str(FONT_PATH))
    units = font["head"].unitsPerEm
    cmap = font.getBestCmap()
    metrics = font["hmtx"].metrics
    for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ* -:abcdefghijklmnopqrstuvwxyz\u2026":
        assert metrics[cmap[ord(char)]][0] / units == ADVANCE, char


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"din_barcode": "=a99992612345689"}, "not a DIN barcode"),
        ({"din_barcode": "=O99992612345689"}, "not a DIN barcode"),
        ({"din_barcode": "A99992612345689"}, "not a DIN barcode"),
        ({"din_eye_readable": "A9999 26 123457"}, "is not DIN"),
        ({"coi": "CHA999926abcdef"}, "not a chain of identity"),
        ({"din_check_character": "a"}, "not a check character"),
        ({"qr_payload": "=A99992612345689&/CHA999926000002"}, "2-D code must carry"),
        ({"collected_at": dt.datetime(2026, 11, 24, 14, 5)}, "timezone"),  # noqa: DTZ001
    ],
)
def test_a_malformed_label_is_refused_never_rendered(override: dict[str, Any], says: str) -> None:
    din = Din.generate(fin="A9999", year=26, sequence=123456)
    coi = Coi.generate(fin="A9999", year=26, number=1)
    with pytest.raises(labels.LabelError, match=says):
        spec_for(din, coi, **override)


def test_impossible_sizes_and_resolutions_are_refused() -> None:
    spec = spec_for(din_with("A"), coi_with("A"))
    with pytest.raises(labels.LabelError, match="at least"):
        labels.render(spec, "png", size=labels.LabelSize("tiny", 40, 20))
    with pytest.raises(labels.LabelError, match="unknown label size"):
        labels.label_size("3x3in")
    with pytest.raises(labels.LabelError, match="dpi"):
        labels.render(spec, "png", dpi=72)
    with pytest.raises(labels.LabelError, match="thermal printers"):
        labels.render(spec, "zpl", dpi=250)
    with pytest.raises(labels.LabelError, match="unknown label format"):
        labels.render(spec, "gif")  # type: ignore[arg-type]
    with pytest.raises(labels.LabelError, match="unknown sheet"):
        labels.render_sheet([spec], sheet="a3")
    with pytest.raises(labels.LabelError, match="no labels"):
        labels.render_sheet([])


def shipment_spec(**overrides: Any) -> labels.ShipmentLabelSpec:
    values: dict[str, Any] = {
        "code": "SHP-00000042",
        "origin": "APH-1 Northgate Hospital Apheresis Unit",
        "destination": "MFG-1 Eastfield Cell Therapy Manufacturing",
        "carrier": "COLDCHAIN ColdChain Cell Couriers",
        "shipper": "LN2-0007",
        "bags": 2,
        "cois": ("CHA100126000001",),
        "packed_at": COLLECTED,
    }
    values.update(overrides)
    return labels.ShipmentLabelSpec(**values)


@pytest.mark.parametrize("size", sorted(labels.SIZES))
def test_a_shipment_label_reads_back_as_its_code_in_both_symbologies(size: str) -> None:
    spec = shipment_spec()
    stock = labels.label_size(size)
    png = Image.open(io.BytesIO(labels.render(spec, "png", size=stock, dpi=300)))
    assert decoded(png) == {"Code 128": "SHP-00000042", "QR Code": "SHP-00000042"}
    (page,) = pdf_pages(labels.render(spec, "pdf", size=stock))
    assert decoded(page) == {"Code 128": "SHP-00000042", "QR Code": "SHP-00000042"}
    zpl = labels.render(spec, "zpl", size=stock, dpi=203).decode()
    assert "^FDSHP-00000042^FS" in zpl
    assert "^FDMA,SHP-00000042^FS" in zpl


def test_a_shipment_label_is_refused_for_anything_but_a_shipment_code() -> None:
    with pytest.raises(labels.LabelError):
        shipment_spec(code="SHP-42")
    with pytest.raises(labels.LabelError):
        shipment_spec(packed_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose
