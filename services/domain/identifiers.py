"""ISBT 128 identifiers: the Donation Identification Number (DIN, data structure 001) and the
Chain of Identity identifier (COI, data structure 040), with ISO/IEC 7064 MOD 37-2 check characters.

Accepted input forms (surrounding whitespace and a scanner's CR/LF are ignored):

* DIN barcode: ``=`` + 13 characters + 2 flag characters, e.g. ``=G12341765432170``
* DIN keyed in: the 13 characters and the check character, spaces allowed, e.g.
  ``G1234 17 654321 A``
* COI barcode: ``&/`` + the 15 characters ``CH`` + FIN + year + 6, e.g. ``&/CHA999926AB12CD``
* COI keyed in: the 15 characters and the check character, spaces allowed
* A label's 2-D code: the data structures above concatenated, DIN first, e.g.
  ``=G12341765432170&/CHG123417AB12CD`` (see :func:`label_payload`)

Lower case is refused, never upper-cased: a scanner that sends lower case is misconfigured, and a
person typing must read the label again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from services.domain.errors import InvalidIdentifier, InvalidRequest

MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
_VALUES = {c: i for i, c in enumerate(MOD37_ALPHABET)}

FIN_RE = re.compile(r"[A-NP-Z1-9][0-9]{4}")
YEAR_RE = re.compile(r"[0-9]{2}")
DIN_SEQUENCE_RE = re.compile(r"[0-9]{6}")
COI_SERIAL_RE = re.compile(r"[A-Z0-9]{6}")
SHIPMENT_RE = re.compile(r"SHP-([0-9]{8})")
_TWO_DIGITS = re.compile(r"[0-9]{2}")  # ASCII: str.isdigit() also takes '²' and '٣'

DIN_DATA_IDENTIFIER = "="
COI_DATA_IDENTIFIER = "&/"
COI_PREFIX = "CH"
DIN_LENGTH = 13
COI_LENGTH = 15
DIN_SEQUENCE_MAX = 999_999
COI_SERIAL_MAX = 36**6 - 1


def mod37_2_checksum(content: str) -> int:
    """The ISO/IEC 7064 MOD 37-2 checksum (0-36) of ``content`` (characters 0-9, A-Z)."""
    s = 0
    for position, char in enumerate(content, start=1):
        value = _VALUES.get(char)
        if value is None or char == "*":
            raise InvalidIdentifier(
                f"character {char!r} at position {position} cannot be part of the identifier"
            )
        s = ((s + value) * 2) % 37
    return (38 - s) % 37


def check_character(content: str) -> str:
    """The keyboard-entry check character printed in a box after the identifier."""
    return MOD37_ALPHABET[mod37_2_checksum(content)]


FlagKind = Literal["none", "checksum", "other"]


@dataclass(frozen=True, slots=True)
class Flags:
    """The two flag characters after a DIN in its barcode."""

    value: str
    kind: FlagKind

    @classmethod
    def parse(cls, din: str, value: str) -> Flags:
        if not _TWO_DIGITS.fullmatch(value):
            raise InvalidIdentifier(
                f"the two flag characters after the DIN must be digits, got {value!r}"
            )
        number = int(value)
        if number == 0:
            return cls(value, "none")
        if 60 <= number <= 96:
            if number - 60 != mod37_2_checksum(din):
                raise InvalidIdentifier(
                    f"flag characters {value!r} do not match DIN {din}: the barcode is damaged "
                    "or misprinted; re-scan it or key in the DIN with its check character"
                )
            return cls(value, "checksum")
        # 01-59 are ISBT 128 process-control flags, 97-99 are for local use: carried, not checked.
        return cls(value, "other")


@dataclass(frozen=True, slots=True)
class Din:
    """A Donation Identification Number: FIN (5) + year (2) + sequence (6)."""

    fin: str
    year: str
    sequence: str

    def __post_init__(self) -> None:
        _check_fin(self.fin)
        _check_part(self.year, YEAR_RE, "year", "2 digits")
        _check_part(self.sequence, DIN_SEQUENCE_RE, "sequence number", "6 digits")

    @classmethod
    def from_value(cls, value: str) -> Din:
        _check_case_and_length(value, DIN_LENGTH, "DIN")
        return cls(fin=value[:5], year=value[5:7], sequence=value[7:])

    @classmethod
    def generate(cls, *, fin: str, year: int, sequence: int) -> Din:
        if not 1 <= sequence <= DIN_SEQUENCE_MAX:
            raise InvalidIdentifier(f"DIN sequence {sequence} is outside 1-{DIN_SEQUENCE_MAX}")
        return cls(fin=fin, year=f"{year % 100:02d}", sequence=f"{sequence:06d}")

    @property
    def value(self) -> str:
        return f"{self.fin}{self.year}{self.sequence}"

    @property
    def check_character(self) -> str:
        return check_character(self.value)

    @property
    def flags(self) -> str:
        """Our labels carry the checksum flag (60 + checksum), so a scan is verified too."""
        return f"{60 + mod37_2_checksum(self.value):02d}"

    @property
    def barcode(self) -> str:
        return f"{DIN_DATA_IDENTIFIER}{self.value}{self.flags}"

    @property
    def eye_readable(self) -> str:
        return f"{self.fin} {self.year} {self.sequence}"

    @property
    def keyboard_entry(self) -> str:
        return f"{self.eye_readable} {self.check_character}"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Coi:
    """A Chain of Identity identifier: ``CH`` + FIN (5) + year (2) + serial (6 of A-Z, 0-9)."""

    fin: str
    year: str
    serial: str

    def __post_init__(self) -> None:
        _check_fin(self.fin)
        _check_part(self.year, YEAR_RE, "year", "2 digits")
        _check_part(self.serial, COI_SERIAL_RE, "serial", "6 characters A-Z or 0-9")

    @classmethod
    def from_value(cls, value: str) -> Coi:
        _check_case_and_length(value, COI_LENGTH, "chain of identity identifier")
        if not value.startswith(COI_PREFIX):
            raise InvalidIdentifier(
                f"a chain of identity identifier starts with {COI_PREFIX!r}, got {value[:2]!r}"
            )
        return cls(fin=value[2:7], year=value[7:9], serial=value[9:])

    @classmethod
    def generate(cls, *, fin: str, year: int, number: int) -> Coi:
        """The ``number``-th COI of a facility and year; the serial is ``number`` in base 36."""
        if not 1 <= number <= COI_SERIAL_MAX:
            raise InvalidIdentifier(f"COI number {number} is outside 1-{COI_SERIAL_MAX}")
        digits = []
        for _ in range(6):
            number, rest = divmod(number, 36)
            digits.append(MOD37_ALPHABET[rest])
        return cls(fin=fin, year=f"{year % 100:02d}", serial="".join(reversed(digits)))

    @property
    def value(self) -> str:
        return f"{COI_PREFIX}{self.fin}{self.year}{self.serial}"

    @property
    def check_character(self) -> str:
        return check_character(self.value)

    @property
    def barcode(self) -> str:
        return f"{COI_DATA_IDENTIFIER}{self.value}"

    @property
    def eye_readable(self) -> str:
        return f"{COI_PREFIX} {self.fin} {self.year} {self.serial}"

    @property
    def keyboard_entry(self) -> str:
        return f"{self.eye_readable} {self.check_character}"

    def __str__(self) -> str:
        return self.value


Form = Literal["barcode", "keyboard", "value"]


@dataclass(frozen=True, slots=True)
class ParsedDin:
    din: Din
    form: Form
    flags: Flags | None = None


@dataclass(frozen=True, slots=True)
class ParsedCoi:
    coi: Coi
    form: Form


Parsed = ParsedDin | ParsedCoi


def parse_identifier(text: str) -> Parsed:
    """Parse one DIN or COI in barcode or keyboard form. Raises :class:`InvalidIdentifier`."""
    compact = _compact(text)
    if compact.startswith(COI_DATA_IDENTIFIER):
        content = compact[len(COI_DATA_IDENTIFIER) :]
        _check_case_and_length(content, COI_LENGTH, "chain of identity barcode (after '&/')")
        return ParsedCoi(Coi.from_value(content), "barcode")
    if compact.startswith(DIN_DATA_IDENTIFIER):
        content = compact[len(DIN_DATA_IDENTIFIER) :]
        _check_case(content)
        if len(content) != DIN_LENGTH + 2:
            raise InvalidIdentifier(
                "a DIN barcode is '=' followed by 13 characters and 2 flag characters "
                f"(16 in all); got {len(compact)} characters"
            )
        din = Din.from_value(content[:DIN_LENGTH])
        return ParsedDin(din, "barcode", Flags.parse(din.value, content[DIN_LENGTH:]))
    _check_case(compact)
    if compact.startswith(COI_PREFIX):
        content = _split_check_character(compact, COI_LENGTH, "chain of identity")
        coi = Coi.from_value(content)  # the structure first: it says more than the check does
        _verify_check_character(compact, COI_LENGTH, "chain of identity")
        return ParsedCoi(coi, "keyboard")
    content = _split_check_character(compact, DIN_LENGTH, "DIN")
    din = Din.from_value(content)
    _verify_check_character(compact, DIN_LENGTH, "DIN")
    return ParsedDin(din, "keyboard")


@dataclass(frozen=True, slots=True)
class ScannedCode:
    """What one scan carried: a bag's DIN and/or COI, or a shipment's code."""

    din: Din | None = None
    coi: Coi | None = None
    shipment_number: int | None = None
    # how it was read: "label" (a bag label's 2-D code: both identifiers), "barcode" (one
    # linear barcode), "keyboard" (typed with its check character), "shipment"
    form: str = "barcode"


def parse_scan(text: str) -> ScannedCode:
    """Parse what a scanner read: a DIN, a COI, a label's 2-D code, or a shipment code."""
    compact = _compact(text)
    if not _looks_like_an_identifier(compact):
        # words, not a code: say so plainly rather than point at a letter's case
        shown = " ".join(text.split())[:40]
        raise InvalidIdentifier(
            f"{shown!r} is not a code of ours: scan a bag's label (its barcode or its 2-D "
            "code) or a shipment's label (SHP-...), or type a DIN with its check character"
        )
    shipment = SHIPMENT_RE.fullmatch(compact)
    if shipment:
        return ScannedCode(shipment_number=int(shipment.group(1)), form="shipment")
    if compact.startswith(DIN_DATA_IDENTIFIER) and COI_DATA_IDENTIFIER in compact:
        # A label's 2-D code: the DIN data structure followed by the COI data structure.
        split = compact.index(COI_DATA_IDENTIFIER)
        din = parse_identifier(compact[:split])
        coi = parse_identifier(compact[split:])
        assert isinstance(din, ParsedDin)
        assert isinstance(coi, ParsedCoi)
        return ScannedCode(din=din.din, coi=coi.coi, form="label")
    parsed = parse_identifier(compact)
    if isinstance(parsed, ParsedDin):
        return ScannedCode(din=parsed.din, form=parsed.form)
    return ScannedCode(coi=parsed.coi, form=parsed.form)


def coi_given(text: str) -> tuple[Coi, bool]:
    """A COI a scanner or a person gave beside a scan: the bare 15 characters (a system naming
    one), its barcode, or keyed with its check character. Returns it and whether it came keyed
    with its check character (what a person typing both identifiers of a label gives)."""
    compact = _compact(text)
    if len(compact) == COI_LENGTH:
        return Coi.from_value(compact), False
    parsed = parse_identifier(compact)
    if not isinstance(parsed, ParsedCoi):
        raise InvalidIdentifier(f"{text!r} is a DIN, not a chain of identity identifier")
    return parsed.coi, parsed.form == "keyboard"


def din_reference(text: str) -> Din:
    """A DIN named by a system rather than typed: the bare 13 characters (as in API paths and
    manifests), or any scanned or keyed form. A person typing is held to the check character by
    :func:`parse_scan`; a machine passing back a DIN we issued is not."""
    compact = _compact(text)
    if len(compact) == DIN_LENGTH:
        return Din.from_value(compact)
    scanned = parse_scan(compact)
    if scanned.din is None:
        raise InvalidIdentifier(f"{text!r} is not a bag's DIN")
    return scanned.din


def coi_reference(text: str) -> Coi:
    """A COI named by a system: the bare 15 characters, its barcode, or keyed with its check."""
    compact = _compact(text)
    if len(compact) == COI_LENGTH:
        return Coi.from_value(compact)
    parsed = parse_identifier(compact)
    if not isinstance(parsed, ParsedCoi):
        raise InvalidIdentifier(f"{text!r} is a DIN, not a chain of identity identifier")
    return parsed.coi


def label_payload(din: Din, coi: Coi) -> str:
    """The text of a bag label's 2-D code; :func:`parse_scan` reads it back."""
    return f"{din.barcode}{coi.barcode}"


def shipment_code(number: int) -> str:
    return f"SHP-{number:08d}"


BATCH_RE = re.compile(r"(?:BAT-)?([0-9]{1,8})")
SHIPMENT_NUMBER_RE = re.compile(r"(?:SHP-)?([0-9]{1,8})")


def batch_code(number: int) -> str:
    return f"BAT-{number:06d}"


def batch_number(text: str) -> int:
    """A batch by its code (``BAT-000012``) or its number (``12``); ASCII digits only."""
    match = BATCH_RE.fullmatch(text.strip().upper())
    if match is None:
        raise InvalidRequest(f"{text!r} is not a batch code such as BAT-000012")
    return int(match.group(1))


def shipment_number(text: str | int) -> int:
    """A shipment by its barcode (``SHP-00000012``) or its number (``12``, or the integer id
    the API answers with); ASCII digits only."""
    if isinstance(text, int):
        if not 1 <= text <= 99_999_999:
            raise InvalidRequest(f"{text} is not a shipment number")
        return text
    match = SHIPMENT_NUMBER_RE.fullmatch(text.strip().upper())
    if match is None:
        raise InvalidRequest(f"{text!r} is not a shipment code such as SHP-00000012")
    return int(match.group(1))


def validate_fin(fin: str) -> str:
    _check_fin(fin)
    return fin


def _looks_like_an_identifier(compact: str) -> bool:
    """Every DIN, COI and shipment code has digits, and the barcodes begin with = or &/: a
    text with neither is words (a note typed in the wrong field), not a misread code."""
    return compact[:1] in ("=", "&") or any(char.isdigit() for char in compact)


def _compact(text: str) -> str:
    compact = "".join(text.split())
    if not compact:
        raise InvalidIdentifier("nothing was scanned or typed")
    return compact


def _split_check_character(compact: str, length: int, what: str) -> str:
    if len(compact) == length:
        raise InvalidIdentifier(
            f"a {what} typed by hand needs its check character (the boxed character after it): "
            f"expected {length + 1} characters, got {length}"
        )
    if len(compact) != length + 1:
        raise InvalidIdentifier(
            f"a {what} typed by hand is {length} characters and its check character "
            f"({length + 1} in all); got {len(compact)}"
        )
    return compact[:length]


def _verify_check_character(compact: str, length: int, what: str) -> None:
    content, given = compact[:length], compact[length]
    if given not in MOD37_ALPHABET:
        raise InvalidIdentifier(f"{given!r} cannot be a check character")
    if check_character(content) != given:
        raise InvalidIdentifier(
            f"check character {given!r} does not match {what} {content}: read the label again "
            "or scan its barcode"
        )


def _check_case(text: str) -> None:
    for position, char in enumerate(text, start=1):
        if char.islower():
            raise InvalidIdentifier(
                f"lower-case {char!r} at position {position}: ISBT 128 identifiers are upper "
                "case (check the scanner's case setting, or retype)"
            )


def _check_case_and_length(value: str, length: int, what: str) -> None:
    _check_case(value)
    if len(value) != length:
        raise InvalidIdentifier(f"a {what} has {length} characters; got {len(value)}")


def _check_fin(fin: str) -> None:
    _check_case(fin)
    if not FIN_RE.fullmatch(fin):
        raise InvalidIdentifier(
            f"facility identification number {fin!r} must be 5 characters: A-N, P-Z or 1-9, "
            "then 4 digits"
        )


def _check_part(value: str, pattern: re.Pattern[str], name: str, shape: str) -> None:
    if not pattern.fullmatch(value):
        raise InvalidIdentifier(f"{name} {value!r} must be {shape}")
