"""Values as people read them on the pages: a change's before and after as "key: value" with
names as written (``Zoë``, not ``Zo\\u00eb``), yes and no rather than true and false."""

from __future__ import annotations

from typing import Any

from flask import Flask


def as_written(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {as_written(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(as_written(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    return str(value)


def install(app: Flask) -> None:
    app.add_template_filter(as_written, "as_written")
