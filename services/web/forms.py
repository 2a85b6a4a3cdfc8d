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
        raise InvalidRequest(
            "the scanner's event id is not one it makes (a UUID); reload the page"
        ) from None


def timestamp(name: str, *, label: str | None = None) -> dt.datetime | None:
    what = label or name.replace("_", " ")
    value = text(name, max_length=40, label=what)
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{what} is not a time such as 2026-12-01T10:30:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{what} needs its offset from UTC, such as +01:00 or Z")
    return parsed


def number(name: str, *, low: int = 1, high: int = 2**31 - 1, label: str | None = None) -> int:
    value = text(name, max_length=12, required=True, label=label)
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidRequest(f"{label or name} is a number from {low} to {high}")
    return int(value)


def date(name: str, *, label: str | None = None) -> dt.date | None:
    """A date field (YYYY-MM-DD, as a browser's date input sends it), or None when empty."""
    value = text(name, max_length=10, label=label)
    if not value:
        return None
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{label or name} is a date such as 1970-01-31") from None
    if not dt.date(1900, 1, 1) <= parsed <= dt.date(9998, 12, 31):
        raise InvalidRequest(f"{label or name} is a date from 1900 on")
    return parsed


def password(name: str) -> str:
    """A password as typed: not stripped, at most 256 characters, no NUL."""
    value = request.form.get(name, "")
    if len(value) > 256 or "\x00" in value:
        raise InvalidRequest("a password has at most 256 characters")
    return value


def row_id(value: int) -> int:
    """An id from a path: the database's INTEGER."""
    if not 1 <= value <= 2**31 - 1:
        raise InvalidRequest(f"{value} is not a number we hand out")
    return value


def local_time(name: str, offset_field: str = "tz_offset") -> dt.datetime | None:
    """A datetime-local field (YYYY-MM-DDTHH:MM, the browser's own clock) with the browser's
    offset from UTC in minutes (as JavaScript's getTimezoneOffset gives it); UTC without it."""
    value = text(name, max_length=20)
    if not value:
        return None
    try:
        naive = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"{name.replace('_', ' ')} is not a date and time such as 2026-12-01 10:30"
        ) from None
    if naive.tzinfo is not None:
        return naive
    offset = text(offset_field, max_length=5)
    minutes = 0
    if offset:
        if not re.fullmatch(r"-?[0-9]{1,4}", offset) or abs(int(offset)) > 14 * 60:
            raise InvalidRequest("the browser's time zone is not one we know")
        minutes = int(offset)
    return naive.replace(tzinfo=dt.timezone(-dt.timedelta(minutes=minutes)))


_PRODUCT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def product(value: str) -> str:
    if not _PRODUCT.fullmatch(value):
        raise InvalidRequest(f"{value[:64]!r} is not a product name")
    return value
