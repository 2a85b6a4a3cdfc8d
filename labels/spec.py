"""What goes on a bag label, and the label stock it is printed on."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# The shapes of what the service hands us. The service computes and verifies the check
# characters (ISO/IEC 7064 MOD 37-2, in services.domain); here we refuse anything malformed so
# that nothing unreadable is ever printed.
_DIN_BARCODE = re.compile(r"=[A-NP-Z1-9][0-9]{4}[0-9]{2}[0-9]{6}[0-9]{2}")
_COI_VALUE = re.compile(r"CH[A-NP-Z1-9][0-9]{4}[0-9]{2}[A-Z0-9]{6}")
_CHECK_CHARACTER = re.compile(r"[0-9A-Z*]")

AUTOLOGOUS = "AUTOLOGOUS USE ONLY"


class LabelError(ValueError):
    """A label that must not be printed: a malformed identifier or an impossible size."""


@dataclass(frozen=True, slots=True)
class LabelSize:
    name: str
    width_mm: float
    height_mm: float


SIZES = {
    size.name: size
    for size in (
        LabelSize("2x4in", 101.6, 50.8),  # 4 in wide, 2 in high: the common apheresis bag label
        LabelSize("100x50mm", 100.0, 50.0),
        LabelSize("100x100mm", 100.0, 100.0),
    )
}
DEFAULT_SIZE = SIZES["2x4in"]


def label_size(name: str) -> LabelSize:
    try:
        return SIZES[name]
    except KeyError:
        raise LabelError(
            f"unknown label size {name!r}; choose one of {', '.join(sorted(SIZES))}"
        ) from None


_SHIPMENT_CODE = re.compile(r"SHP-[0-9]{8}")
SHIPPER_BANNER = "LN2 DRY SHIPPER - KEEP UPRIGHT"


@dataclass(frozen=True, slots=True)
class ShipmentLabelSpec:
    """A shipper's label: its code as Code 128 and QR (what a courier scans to move every bag
    in it), where it goes, who carries it, and what it holds."""

    code: str  # SHP-00000012
    origin: str  # "APH-1 First Apheresis"
    destination: str
    carrier: str | None
    shipper: str  # the dry shipper's serial
    bags: int
    cois: tuple[str, ...]
    packed_at: dt.datetime

    def __post_init__(self) -> None:
        if not _SHIPMENT_CODE.fullmatch(self.code):
            raise LabelError(f"{self.code!r} is not a shipment code such as SHP-00000012")
        if self.packed_at.tzinfo is None:
            raise LabelError("the packing time needs its timezone")


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One bag's label. Identifiers come in the forms the service already verified."""

    din_barcode: str  # "=" + DIN + 2 flag characters: the Code 128 content
    din_eye_readable: str  # "A9999 26 123456"
    din_check_character: str  # printed in a box after the DIN
    coi: str  # the 15 characters "CH" + FIN + year + serial
    coi_check_character: str
    qr_payload: str  # the 2-D code's text: the DIN and COI data structures together
    product: str
    collected_at: dt.datetime
    site: str  # the collection site's name (a product's: its manufacturing site's)
    # a product bag's label says when it was filled, not collected
    time_caption: str = "Collected"

    def __post_init__(self) -> None:
        if not _DIN_BARCODE.fullmatch(self.din_barcode):
            raise LabelError(
                f"{self.din_barcode!r} is not a DIN barcode ('=' + 13 characters + 2 flags)"
            )
        din = self.din_barcode[1:14]
        if self.din_eye_readable.replace(" ", "") != din:
            raise LabelError(f"eye-readable {self.din_eye_readable!r} is not DIN {din}")
        if not _COI_VALUE.fullmatch(self.coi):
            raise LabelError(f"{self.coi!r} is not a chain of identity identifier")
        for name in ("din_check_character", "coi_check_character"):
            if not _CHECK_CHARACTER.fullmatch(getattr(self, name)):
                raise LabelError(f"{getattr(self, name)!r} is not a check character")
        if self.qr_payload != f"{self.din_barcode}&/{self.coi}":
            raise LabelError("the 2-D code must carry this label's DIN and COI, nothing else")
        if self.collected_at.tzinfo is None:
            raise LabelError("the collection time needs its timezone")

    @property
    def coi_eye_readable(self) -> str:
        return f"{self.coi[:2]} {self.coi[2:7]} {self.coi[7:9]} {self.coi[9:]}"

    @property
    def collected_text(self) -> str:
        return self.collected_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
