"""GS1's official EPCIS 2.0 JSON schema (github.com/gs1/EPCIS, Apache License 2.0), shipped with
the package: captured documents are checked against it before anything else."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator


@functools.cache
def validator() -> Draft7Validator:
    schema = json.loads(resources.files(__package__).joinpath("EPCIS-JSON-Schema.json").read_text())
    return Draft7Validator(schema)


def errors(document: Any, limit: int = 20) -> list[dict[str, str]]:
    """What the schema says is wrong with the document (empty: valid), deepest first."""
    found = sorted(validator().iter_errors(document), key=lambda e: (-len(e.path), str(e.path)))
    return [
        {
            "path": "/" + "/".join(str(p) for p in error.absolute_path),
            "message": error.message[:300],
        }
        for error in found[:limit]
    ]
