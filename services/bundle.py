"""Verify an evidence bundle where nothing else of vein2vein runs: no database, no web
framework, only the standard library and ``cryptography``.

    python -m services.bundle BUNDLE.json [--public-key BASE64]...

A bundle is verified only against a key obtained another way than from the bundle: the
installation's published key, given with ``--public-key`` (repeatable: old keys stay valid for
what they signed) or in ``AUDIT_TRUSTED_KEYS`` (base64 keys separated by commas).

Exit status: 0 verified (it holds together and the installation's export signature verifies
with a trusted key); 1 broken (names the first record, signature, review, checkpoint or header
field that was changed, removed or reordered, or what is malformed); 2 not checked (no such
file, or a given key that is not a key); 3 origin unproven (it holds together, but no trusted
key was given or none of them signed it). ``vein2vein audit verify --bundle`` is the same check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from services.domain.evidence import parse_keys
from services.domain.evidence_check import (
    BROKEN,
    VERIFIED,
    BundleFinding,
    BundleReport,
    verify_bundle,
)

EXIT_VERIFIED, EXIT_BROKEN, EXIT_NOT_CHECKED, EXIT_UNPROVEN = 0, 1, 2, 3
TRUSTED_KEYS_VARIABLE = "AUDIT_TRUSTED_KEYS"


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:  # two readers could take different ones: refuse to guess
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(data: bytes) -> Any:
    """The bundle's JSON, strictly: UTF-8, no duplicate keys, no NaN or Infinity. Raises
    ValueError naming what is wrong (nesting too deep for the parser included)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"it is not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("it nests too deeply to be read") from None


def check(path: Path, trusted: list[bytes]) -> BundleReport:
    """The file's bundle checked against ``trusted``; OSError if it cannot be read."""
    data = path.read_bytes()
    try:
        bundle = parse(data)
    except ValueError as error:
        finding = BundleFinding("the file", f"is not a JSON bundle: {error}")
        return BundleReport(0, 0, 0, 0, [], finding)
    return verify_bundle(bundle, trusted_keys=trusted)


def describe(report: BundleReport) -> str:
    return (
        f"{report.records} records, {report.signatures} signatures, {report.reviews} reviews, "
        f"{report.checkpoints} signed checkpoints (keys {', '.join(report.key_ids) or 'none'})"
    )


def outcome(report: BundleReport) -> tuple[int, list[str], list[str]]:
    """The exit status and the lines for standard output and standard error."""
    if report.status == VERIFIED:
        lines = [f"verified: {describe(report)}, exported and signed by key {report.signed_by}"]
        return EXIT_VERIFIED, lines + [f"  {note}" for note in report.notes], []
    if report.status == BROKEN:
        return (
            EXIT_BROKEN,
            [],
            [f"BROKEN: {report.finding}", f"checked before the break: {describe(report)}"],
        )
    return (
        EXIT_UNPROVEN,
        [],
        [
            f"ORIGIN UNPROVEN: {report.unproven}",
            f"it holds together: {describe(report)}",
        ],
    )


def configured_keys(environ: dict[str, str] | None = None) -> list[bytes]:
    """The keys in ``AUDIT_TRUSTED_KEYS``; ValueError naming one that is not a key."""
    return parse_keys((os.environ if environ is None else environ).get(TRUSTED_KEYS_VARIABLE, ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="exit status: 0 verified, 1 broken, 2 not checked, 3 origin unproven",
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--public-key", action="append", default=[], help="base64, repeatable")
    args = parser.parse_args(argv)
    try:
        trusted = parse_keys(",".join(args.public_key), source="--public-key")
        trusted += configured_keys()
    except ValueError as error:
        print(f"not checked: {error}", file=sys.stderr)
        return EXIT_NOT_CHECKED
    try:
        report = check(args.bundle, trusted)
    except OSError as error:
        print(f"not checked: cannot read {args.bundle}: {error.strerror or error}", file=sys.stderr)
        return EXIT_NOT_CHECKED
    status, out, err = outcome(report)
    for line in out:
        print(line)
    for line in err:
        print(line, file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
