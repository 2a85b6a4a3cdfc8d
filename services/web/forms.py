"""Page forms: each field checked (length, characters, shape) before anything reaches the
database, with a refusal in words the page shows."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from flask import request

from services.domain.errors import InvalidRequest

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text(name: str, *, max_length: int, required: bool = False, label: str | None = None) -> str:
    """A form field, stripped; refused when too long, when it holds control characters, or
    when it is required and empty."""
    value = request.form.get(name, "").strip()
    what = label or name.replace("_", " ")
    if required and not value:
        raise InvalidRequest(f"{what} is required")
    if len(value) > max_length:
        raise InvalidRequest(f"{what} has at most {max_length} characters")
    if _CONTROL.search(value):
        raise InvalidRequest(f"{what} cannot contain control characters")
    return value


def optional(name: str, *, max_length: int, label: str | None = None) -> str | None:
    return text(name, max_length=max_length, label=label) or None


def event_id(name: str = "event_id") -> str:
    """A scanner's own event id, or a new one."""
    value = request.form.get(name, "").strip()
    if not value:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest("event_id is not a UUID") from None


def timestamp(name: str) -> dt.datetime | None:
    value = text(name, max_length=40)
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} is not a time such as 2026-12-01T10:30:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{name} needs its offset")
    return parsed


def number(name: str, *, low: int = 1, high: int = 2**31 - 1, label: str | None = None) -> int:
    value = text(name, max_length=12, required=True, label=label)
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidRequest(f"{label or name} is a number from {low} to {high}")
    return int(value)
