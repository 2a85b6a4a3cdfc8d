"""Request bodies before a JSON parser sees them: bounded in size and in nesting.

Size: Flask's MAX_CONTENT_LENGTH (1 MiB; an EPCIS capture 4 MiB) refuses a larger body with
413 before it is read whole. Nesting: Python's json parser recurses once per level, and 200,000
``[`` end in a RecursionError (a 500) after a second of work. No document of ours nests deeper
than a few levels, so a body nested deeper than ``MAX_DEPTH`` is refused (400 ``invalid_json``)
by counting its brackets outside strings, in C-speed byte operations (a 4 MiB capture in
about 15 ms), before any parser recurses. Every ``request.get_json()`` (the API's bodies, a
page form sent as JSON) goes through ``BoundedJSONProvider``; the EPCIS capture reads its body
with ``loads``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import g, has_app_context
from flask.json.provider import DefaultJSONProvider

from services.domain.errors import InvalidJson

MAX_DEPTH = 64  # arrays and objects within each other; an EPCIS document needs about 8

_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"(())")
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"[]{}')


def nesting_within(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON parser reading ``data`` recurses through at most ``limit`` arrays and
    objects within each other.

    Exact for JSON text. For text that does not close what it opens it bounds what a parser
    would recurse through before stopping at the error, so text a parser refuses anyway
    (``[1,``) is left to the parser's own ValueError unless that bound is over the limit.
    Escapes are taken out first (an escaped backslash, then an escaped quote), then all but
    quotes and brackets; strings with no bracket in them go as pairs of quotes, the rest by
    splitting at quotes. Each pass over the brackets left takes out every innermost pair, so
    text ``limit`` deep is gone after ``limit`` passes, and deeper text is not."""
    kept = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    # two quotes side by side close a string and open the next, or hold nothing: no bracket
    # moves in or out of a string when they go
    kept = kept.replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])  # what lies outside strings
    brackets = kept.translate(_OPEN_CLOSE)
    passes = 0
    while brackets:
        inner_gone = brackets.replace(b"()", b"")
        if len(inner_gone) == len(brackets):
            # unbalanced: ")))(((" is left. A parser stops at the first stray ")" or at the
            # end, having recursed through the opens left and what was taken out within them
            return passes + brackets.count(b"(") <= limit
        passes += 1
        if passes > limit:
            return False
        brackets = inner_gone
    return True


def check_nesting(data: bytes | str) -> None:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if not nesting_within(raw):
        raise InvalidJson(
            f"the body nests arrays and objects more than {MAX_DEPTH} deep: no request of this "
            "API does"
        )


def loads(data: bytes | str) -> Any:
    """A body as JSON, refused (InvalidJson) before parsing when nested too deep; a body that
    is not JSON raises ValueError, as ``json.loads`` does."""
    check_nesting(data)
    return json.loads(data)


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with every body's nesting checked before it is parsed."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if has_app_context() and g.get(_REFUSED):
            # the body was refused already: whatever draws that answer (a page's forms read
            # the body as their data) reads it as none, rather than refusing it again
            return None
        try:
            check_nesting(s)
        except InvalidJson:
            if has_app_context():
                g.setdefault(_REFUSED, True)
            raise
        return super().loads(s, **kwargs)


_REFUSED = "vein2vein_body_refused"
