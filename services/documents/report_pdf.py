"""The chain-of-custody report as PDF (reportlab): the same record gives the same bytes.

Deterministic by construction: reportlab's invariant mode (no creation time, fixed document
id), the record's own newest time as the only date, the base-14 fonts (nothing embedded that
could differ), and every list in the record's order. Pages are numbered "page x of y" in a
second pass over the laid-out pages.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas as pdf_canvas
from reportlab.platypus import (
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from services.operations.report import ReportData

PAGE = landscape(A4)
MARGIN = 14 * mm
_styles = getSampleStyleSheet()
BODY = ParagraphStyle(
    "body", parent=_styles["Normal"], fontName="Helvetica", fontSize=8, leading=10
)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7, leading=8.5)
MONO = ParagraphStyle("mono", parent=SMALL, fontName="Courier")
H1 = ParagraphStyle("h1", parent=_styles["Heading1"], fontName="Helvetica-Bold", fontSize=15)
H2 = ParagraphStyle(
    "h2", parent=_styles["Heading2"], fontName="Helvetica-Bold", fontSize=11, spaceBefore=8
)
BAD = ParagraphStyle("bad", parent=BODY, textColor=colors.HexColor("#a4000f"))


def _time(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _p(text: object, style: ParagraphStyle = SMALL) -> Paragraph:
    return Paragraph(escape(str(text)) if text is not None else "", style)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[float]) -> Table:
    data = [[_p(h, ParagraphStyle("th", parent=SMALL, fontName="Helvetica-Bold")) for h in header]]
    data += [[cell if isinstance(cell, Paragraph) else _p(cell) for cell in row] for row in rows]
    table = Table(data, colWidths=list(widths), repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b0b0")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    return table


class _NumberedCanvas(pdf_canvas.Canvas):
    """Draws "page x of y" and the footer once every page is laid out."""

    footer = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 - reportlab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for number, state in enumerate(self._pages, start=1):
            self.__dict__.update(state)
            self.setFont("Helvetica", 7)
            self.setFillColor(colors.HexColor("#4a4a4a"))
            self.drawString(MARGIN, 8 * mm, self.footer)
            self.drawRightString(PAGE[0] - MARGIN, 8 * mm, f"page {number} of {total}")
            super().showPage()
        super().save()


def render(data: ReportData) -> bytes:
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=14 * mm,
        title=f"Chain of custody {data.coi}",
        author="vein2vein",
        subject=f"Chain of identity and custody record of {data.coi}",
        creator="vein2vein",
        invariant=1,
    )
    width = PAGE[0] - 2 * MARGIN

    class Canvas(_NumberedCanvas):
        footer = (
            f"vein2vein chain-of-custody report · {data.coi} · record as of "
            f"{_time(data.as_of)} UTC · chain head {data.chain_head[:16]}..."
        )

    story: list[Any] = [
        _p("Chain of identity and custody report", H1),
        _header(data, width),
        Spacer(1, 2 * mm),
        *_how_to_verify(data),
        Spacer(1, 4 * mm),
    ]
    story += _section(
        "Bags and products",
        _table(
            ["DIN", "kind", "state", "held by"],
            data.units,
            [width * 0.3, width * 0.2, width * 0.25, width * 0.25],
        ),
    )
    story += _section("Events (both clocks, UTC)", _events(data, width))
    story += _section(
        "Signatures (21 CFR 11.50: printed name, date and time, meaning)",
        _table(
            ["event #", "printed name", "e-mail", "meaning", "signed at (UTC)"],
            [
                (
                    s.sequence,
                    s.printed_name,
                    s.email,
                    s.meaning + (" (witness)" if s.witness else ""),
                    _time(s.signed_at),
                )
                for s in data.signatures
            ]
            or [("", "no signatures", "", "", "")],
            [width * 0.1, width * 0.25, width * 0.3, width * 0.15, width * 0.2],
        ),
    )
    story += _section(
        "Shipments",
        _table(
            [
                "shipment",
                "shipper",
                "from",
                "to",
                "courier",
                "state",
                "manifest",
                "received",
                "reconciliation",
            ],
            [
                (
                    s.code,
                    s.shipper,
                    s.origin,
                    s.destination,
                    s.carrier or "",
                    s.state,
                    ", ".join(s.manifest),
                    ", ".join(s.received),
                    (
                        f"{_time(s.reconciled_at)}; missing: {', '.join(s.missing or []) or 'none'}"
                        if s.reconciled_at
                        else "not reconciled"
                    ),
                )
                for s in data.shipments
            ]
            or [("", "no shipments", "", "", "", "", "", "", "")],
            [width * w for w in (0.1, 0.08, 0.07, 0.07, 0.07, 0.08, 0.2, 0.16, 0.17)],
        ),
    )
    story += _section(
        "Batches and the QA decision",
        _table(
            ["batch", "state", "made from", "products", "why (a failure)"],
            [
                (code, state, ", ".join(inputs), ", ".join(outputs), why or "")
                for code, state, inputs, outputs, why in data.batches
            ]
            or [("", "no batch", "", "", "")],
            [width * 0.12, width * 0.12, width * 0.28, width * 0.28, width * 0.2],
        ),
    )
    story += _section(
        "Condition per leg (temperature)",
        _table(
            ["shipment", "logger", "readings", "min °C", "max °C", "mean °C", "alarms"],
            [
                (
                    c.shipment,
                    device,
                    count,
                    f"{low:.1f}",
                    f"{high:.1f}",
                    f"{mean:.1f}",
                    "; ".join(c.alarms) or "none",
                )
                for c in data.conditions
                for device, count, low, high, mean in c.devices
            ]
            or [("", "no temperature data", "", "", "", "", "")],
            [width * w for w in (0.12, 0.12, 0.08, 0.08, 0.08, 0.08, 0.44)],
        ),
    )
    story += _section(
        "Refused scans",
        _table(
            ["recorded (UTC)", "action", "site", "code", "why"],
            [
                (_time(when), action, site, code, detail)
                for when, action, site, code, detail in data.refusals
            ]
            or [("", "none", "", "", "")],
            [width * 0.14, width * 0.12, width * 0.1, width * 0.14, width * 0.5],
        ),
    )
    story += _section("Audit verification", _audit(data, width))
    doc.build(story, canvasmaker=Canvas)
    return out.getvalue()


def _section(title: str, body: Any) -> list[Any]:
    return [_p(title, H2), body]


def _header(data: ReportData, width: float) -> Table:
    rows = [
        ("Chain of identity (COI)", data.coi_readable),
        ("Product", data.product),
        ("Collection site", data.sites["collection"]),
        ("Manufacturing site", data.sites["manufacturing"]),
        ("Treatment site", data.sites["treatment"]),
        ("Patient reference", data.patient_ref or "not shown to this site"),
        ("Order state", data.state.replace("_", " ")),
        ("Record as of", f"{_time(data.as_of)} UTC"),
    ]
    table = Table(
        [
            [_p(k, BODY), _p(v, ParagraphStyle("v", parent=BODY, fontName="Helvetica-Bold"))]
            for k, v in rows
        ],
        colWidths=[width * 0.2, width * 0.5],
        hAlign="LEFT",
    )
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def _how_to_verify(data: ReportData) -> list[Paragraph]:
    """Page 1: the key that signs this installation's evidence bundles, and how to check one
    without our database."""
    if data.signing_key_id is None:
        return [
            _p(
                "Evidence bundle: this installation has no signing key, so its evidence bundles "
                "are unsigned and cannot prove where they come from (vein2vein keys init).",
                BAD,
            )
        ]
    return [
        _p(
            f"Evidence bundle: signed when exported by this installation's key "
            f"{data.signing_key_id} (Ed25519). Its SHA-256 fingerprint:",
            BODY,
        ),
        _p(data.signing_key_fingerprint, MONO),
        _p(
            f"To verify it without this installation's database: download the order's evidence "
            f"bundle (GET /api/v1/orders/{data.coi}/evidence, the timeline's Evidence bundle "
            f"button, or vein2vein audit export {data.coi}); obtain the installation's public "
            "key from its operator by a channel you trust (not from the bundle) and check that "
            "its fingerprint is the one above; then run python -m services.bundle "
            f"evidence-{data.coi}.json --public-key KEY (exit 0: verified; 3: origin unproven; "
            "1: broken, naming what).",
            SMALL,
        ),
    ]


def _events(data: ReportData, width: float) -> Table:
    corrections: dict[int, list[str]] = {}
    for event in data.events:
        if event.corrects:
            corrections.setdefault(event.corrects, []).append(
                f"corrected by #{event.sequence}: {event.reason}"
            )
    rows = []
    for e in data.events:
        what = e.action.replace("_", " ")
        if e.batch_status:
            what = f"batch {e.batch}: {e.batch_status.replace('_', ' ')}"
        notes = [
            n for n in (e.reason if not e.corrects else f"corrects #{e.corrects}: {e.reason}",) if n
        ]
        notes += corrections.get(e.sequence, [])
        if e.needs_review:
            notes.append(f"review: {e.review_reason}")
        rows.append(
            (
                e.sequence,
                _time(e.occurred_at),
                _time(e.recorded_at),
                what,
                _p(e.din or "", MONO),
                f"{e.site} (held by {e.custodian})",
                e.actor,
                data.identity.get(e.sequence, ""),
                "; ".join(notes),
            )
        )
    return _table(
        [
            "#",
            "happened (scanner)",
            "recorded (server)",
            "what",
            "bag",
            "where",
            "who",
            "identity checks",
            "notes",
        ],
        rows,
        [width * w for w in (0.04, 0.115, 0.115, 0.1, 0.1, 0.11, 0.12, 0.16, 0.14)],
    )


def _audit(data: ReportData, width: float) -> KeepTogether:
    qr = QrCodeWidget(data.chain_head or "empty")
    left, bottom, right, top = qr.getBounds()
    side = 32 * mm
    drawing = Drawing(
        side, side, transform=[side / (right - left), 0, 0, side / (top - bottom), 0, 0]
    )
    drawing.add(qr)
    verdict = (
        _p(
            "VERIFIED: every record of this order's chain links to the one before it and matches "
            "its hash; the chain head, checkpoints, signatures and reviews agree.",
            BODY,
        )
        if data.verified
        else _p(f"BROKEN: {data.finding}", BAD)
    )
    table = Table(
        [
            [
                [
                    verdict,
                    Spacer(1, 2 * mm),
                    _p(f"Chain head after {data.chain_length} records:", BODY),
                    _p(data.chain_head, MONO),
                ],
                drawing,
            ]
        ],
        colWidths=[width - side - 6 * mm, side + 6 * mm],
    )
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return KeepTogether([table])
