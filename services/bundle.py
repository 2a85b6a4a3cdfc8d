"""Verify an evidence bundle where nothing else of vein2vein runs: no database, no web
framework, only the standard library and ``cryptography``.

    python -m services.bundle BUNDLE.json [--public-key BASE64]

Exit 0 when the bundle holds together (printing what it checked), 1 naming the first record,
signature, review or checkpoint that was changed, removed or reordered. ``--public-key``: the
installation's published key (GET /api/v1/keys), so that a bundle re-signed with another key
and carrying that key is caught too. ``vein2vein audit verify --bundle`` runs the same check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.domain.evidence import BundleReport, decode_key, verify_bundle


def check(path: Path, public_keys: list[str]) -> BundleReport:
    bundle = json.loads(path.read_text())
    trusted = [decode_key(key) for key in public_keys]
    return verify_bundle(bundle, trusted_keys=trusted)


def describe(report: BundleReport) -> str:
    return (
        f"{report.records} records, {report.signatures} signatures, {report.reviews} reviews, "
        f"{report.checkpoints} signed checkpoints (keys {', '.join(report.key_ids) or 'none'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--public-key", action="append", default=[], help="base64, repeatable")
    args = parser.parse_args(argv)
    try:
        report = check(args.bundle, args.public_key)
    except (OSError, ValueError) as error:
        print(f"cannot read {args.bundle}: {error}", file=sys.stderr)
        return 2
    if report.finding is not None:
        print(f"BROKEN: {report.finding}", file=sys.stderr)
        print(f"checked before the break: {describe(report)}", file=sys.stderr)
        return 1
    print(f"verified: {describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
