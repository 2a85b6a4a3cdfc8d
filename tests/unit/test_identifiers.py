"""ISBT 128 identifiers and the ISO/IEC 7064 MOD 37-2 check character."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.domain.errors import InvalidIdentifier
from services.domain.identifiers import (
    MOD37_ALPHABET,
    Coi,
    Din,
    ParsedCoi,
    ParsedDin,
    check_character,
    label_payload,
    mod37_2_checksum,
    parse_identifier,
    parse_scan,
    shipment_code,
)

fins = st.from_regex(r"[A-NP-Z1-9][0-9]{4}", fullmatch=True)
years = st.integers(min_value=0, max_value=99)
sequences = st.integers(min_value=1, max_value=999_999)
coi_numbers = st.integers(min_value=1, max_value=36**6 - 1)


def test_published_worked_example() -> None:
    assert mod37_2_checksum("G123417654321") == 10
    assert check_character("G123417654321") == "A"
    parsed = parse_identifier("=G12341765432170")
    assert isinstance(parsed, ParsedDin)
    assert parsed.din.value == "G123417654321"
    assert parsed.flags is not None
    assert parsed.flags.kind == "checksum"
    assert Din.from_value("G123417654321").flags == "70"


def _din_with_check(char: str) -> Din:
    for sequence in range(1, 10_000):
        din = Din.generate(fin="A9999", year=26, sequence=sequence)
        if din.check_character == char:
            return din
    raise AssertionError(f"no DIN with check character {char}")


@pytest.mark.parametrize("char", ["*", "O", "0", "A", "Z"])
def test_every_check_character_round_trips(char: str) -> None:
    din = _din_with_check(char)
    assert din.check_character == char
    keyed = parse_identifier(din.keyboard_entry)
    assert isinstance(keyed, ParsedDin)
    assert keyed.din == din
    assert keyed.form == "keyboard"
    scanned = parse_identifier(din.barcode)
    assert isinstance(scanned, ParsedDin)
    assert scanned.din == din


def test_star_check_character_is_checksum_36_and_flag_96() -> None:
    din = _din_with_check("*")
    assert mod37_2_checksum(din.value) == 36
    assert din.barcode.endswith("96")


def test_keyboard_entry_accepts_eye_readable_spacing() -> None:
    assert parse_identifier("G1234 17 654321 A") == parse_identifier("G123417654321A")


def test_scanner_line_ending_is_ignored() -> None:
    assert parse_identifier("=G12341765432170\r\n") == parse_identifier("=G12341765432170")


def test_flags_00_mean_none_and_are_not_checked() -> None:
    parsed = parse_identifier("=G12341765432100")
    assert isinstance(parsed, ParsedDin)
    assert parsed.flags is not None
    assert parsed.flags.kind == "none"


def test_process_control_flags_are_carried_not_checked() -> None:
    parsed = parse_identifier("=G12341765432101")
    assert isinstance(parsed, ParsedDin)
    assert parsed.flags is not None
    assert (parsed.flags.kind, parsed.flags.value) == ("other", "01")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("=G12341765432171", "flag characters '71' do not match"),
        ("=G1234176543217", "16 in all"),
        ("=G123417654321AB", "flag characters after the DIN must be digits"),
        ("G123417654321K", "check character 'K' does not match"),
        ("G123417654321", "needs its check character"),
        ("G12341765432", "13 characters and its check character"),
        ("g123417654321A", "lower-case 'g' at position 1"),
        ("=g12341765432170", "lower-case 'g'"),
        ("O123417654321A", "facility identification number 'O1234'"),
        ("0123417654321A", "facility identification number '01234'"),
        ("G1234A7654321A", "year 'A7' must be 2 digits"),
        ("G12341765432XA", "sequence number '65432X' must be 6 digits"),
        ("G1234#7654321A", "year '#7' must be 2 digits"),
        ("G#23417654321A", "facility identification number 'G#234'"),
        ("", "nothing was scanned"),
        ("   ", "nothing was scanned"),
        ("&/CHA999926AB12C", "has 15 characters; got 14"),
        ("&/XXA999926AB12CD", "starts with 'CH'"),
        ("CHA999926AB12CD", "needs its check character"),
        ("&/CHA999926ab12cd", "lower-case 'a'"),
        ("G123417654321?", "'?' cannot be a check character"),
        ("G123417654321\u00e9", "lower-case"),
    ],
)
def test_malformed_input_says_precisely_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier(text)
    assert says in caught.value.detail


def test_wrong_check_character_does_not_reveal_the_right_one() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier("G123417654321K")
    assert "'A'" not in caught.value.detail


def test_coi_forms() -> None:
    coi = Coi.generate(fin="A9999", year=2026, number=36**3 + 5)
    assert coi.value == "CHA999926001005"
    assert coi.barcode == "&/CHA999926001005"
    assert coi.eye_readable == "CH A9999 26 001005"
    for text in (coi.barcode, coi.keyboard_entry, coi.value + coi.check_character):
        parsed = parse_identifier(text)
        assert isinstance(parsed, ParsedCoi)
        assert parsed.coi == coi


def test_contract_example_coi_barcode() -> None:
    parsed = parse_identifier("&/CHA999926AB12CD")
    assert isinstance(parsed, ParsedCoi)
    assert parsed.coi.serial == "AB12CD"
    assert parsed.coi.check_character == check_character("CHA999926AB12CD")


def test_label_payload_carries_both_identifiers() -> None:
    din = Din.generate(fin="A9999", year=26, sequence=42)
    coi = Coi.generate(fin="A9999", year=26, number=7)
    scanned = parse_scan(label_payload(din, coi))
    assert (scanned.din, scanned.coi) == (din, coi)


def test_label_payload_with_a_damaged_coi_is_refused() -> None:
    din = Din.generate(fin="A9999", year=26, sequence=42)
    with pytest.raises(InvalidIdentifier):
        parse_scan(din.barcode + "&/CHA99992600")


def test_shipment_code() -> None:
    assert parse_scan(shipment_code(12)).shipment_number == 12


@given(fin=fins, year=years, sequence=sequences)
def test_din_round_trips_through_every_form(fin: str, year: int, sequence: int) -> None:
    din = Din.generate(fin=fin, year=year, sequence=sequence)
    assert len(din.value) == 13
    assert din.check_character in MOD37_ALPHABET
    for text in (din.barcode, din.keyboard_entry, din.value + din.check_character):
        parsed = parse_identifier(text)
        assert isinstance(parsed, ParsedDin)
        assert parsed.din == din


@given(fin=fins, year=years, number=coi_numbers)
def test_coi_round_trips(fin: str, year: int, number: int) -> None:
    coi = Coi.generate(fin=fin, year=year, number=number)
    parsed = parse_identifier(coi.keyboard_entry)
    assert isinstance(parsed, ParsedCoi)
    assert parsed.coi == coi


@given(
    fin=fins,
    year=years,
    sequence=sequences,
    position=st.integers(min_value=0, max_value=12),
    replacement=st.sampled_from(string.digits + string.ascii_uppercase),
)
def test_any_single_substitution_is_caught(
    fin: str, year: int, sequence: int, position: int, replacement: str
) -> None:
    din = Din.generate(fin=fin, year=year, sequence=sequence)
    typed = list(din.value + din.check_character)
    if typed[position] == replacement:
        return
    typed[position] = replacement
    with pytest.raises(InvalidIdentifier):
        parse_identifier("".join(typed))


@given(fin=fins, year=years, sequence=sequences, position=st.integers(min_value=0, max_value=12))
def test_any_adjacent_transposition_is_caught(
    fin: str, year: int, sequence: int, position: int
) -> None:
    din = Din.generate(fin=fin, year=year, sequence=sequence)
    typed = list(din.value + din.check_character)
    if typed[position] == typed[position + 1]:
        return
    typed[position], typed[position + 1] = typed[position + 1], typed[position]
    with pytest.raises(InvalidIdentifier):
        parse_identifier("".join(typed))
