"""GS1's official EPCIS 2.0 JSON schema (github.com/gs1/EPCIS, Apache License 2.0), shipped with
the package: captured documents are checked against it before anything else."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema_rs
from jsonschema import Draft7Validator


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("EPCIS-JSON-Schema.json").read_text()
    )
    return schema


@functools.cache
def validator() -> Draft7Validator:
    """The reference: the Python jsonschema package, which the tests hold the fast one to."""
    return Draft7Validator(_schema())


@functools.cache
def fast_validator() -> jsonschema_rs.Draft7Validator:
    """The same schema in jsonschema-rs (Rust), a few hundred times faster on a capture (500
    events: about 4 ms rather than a second). Formats are not checked, as the reference does
    not check them without a format checker."""
    return jsonschema_rs.Draft7Validator(_schema(), validate_formats=False)


def errors(document: Any, limit: int = 20) -> list[dict[str, str]]:
    """What the schema says is wrong with the document (empty: valid), deepest first."""
    checker = fast_validator()
    if checker.is_valid(document):
        return []
    found = sorted(
        checker.iter_errors(document),
        key=lambda e: (-len(e.instance_path), str(list(e.instance_path))),
    )
    return [
        {
            "path": "/" + "/".join(str(p) for p in error.instance_path),
            "message": error.message[:300],
        }
        for error in found[:limit]
    ]
