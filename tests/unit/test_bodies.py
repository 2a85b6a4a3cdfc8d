"""A body's nesting is judged by counting brackets outside strings: held to a real parser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.errors import InvalidJson
from services.web.bodies import MAX_DEPTH, loads, nesting_within

# strings full of what could fool a counter: brackets, quotes, backslashes, escapes
TRICKY = st.text(alphabet='[]{}"\\/ab\n\u00e9\u2028', max_size=12)
LEAF = st.one_of(TRICKY, st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False))


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(inner: Any, levels: int, keys: list[str]) -> Any:
    for level in range(levels):
        key = keys[level % len(keys)] if keys else "k"
        inner = {key: inner, "[": "]"} if level % 2 else ["}", inner, '"[']
    return inner


@settings(max_examples=400, deadline=None)
@given(
    leaf=st.recursive(
        LEAF,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TRICKY, kids, max_size=3),
        max_leaves=12,
    ),
    levels=st.integers(min_value=0, max_value=MAX_DEPTH + 6),
    keys=st.lists(TRICKY, max_size=3),
)
def test_the_count_agrees_with_the_depth_a_parser_finds(
    leaf: Any, levels: int, keys: list[str]
) -> None:
    document = nested(leaf, levels, keys)
    text = json.dumps(document, ensure_ascii=False).encode()
    assert nesting_within(text) == (depth(json.loads(text)) <= MAX_DEPTH)


@pytest.mark.parametrize(
    ("text", "within"),
    [
        (b"[" * 200_000, False),
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, True),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), False),
        (b'{"a": "' + b"[" * 5000 + b'"}', True),  # brackets inside a string count for nothing
        (b'["\\\\", ' * 70 + b"1" + b"]" * 70, False),  # an escaped backslash closes no string
        (b'["\\"[", ' * 70 + b"1" + b"]" * 70, False),  # an escaped quote opens none
        # strings that would pair the brackets off, were strings not taken out first
        (b'["]", ' * 70 + b"1" + b', "["]' * 70, False),
        (b"[]" * 100_000, True),
        (b"", True),
        (b"[1,", True),  # not JSON, but shallow: the parser says so (a ValueError)
        (b"[" * MAX_DEPTH, True),
        (b"[" * (MAX_DEPTH + 1), False),
        (b"]]]" + b"[[[", True),
        (b"[" * 40 + b"[]" * 3 + b"[" * 30, False),
        # not JSON: the bound (4 passes, then the opens left) may overcount; refused either way
        (b"[[[[]]]]" + b"[" * 60, True),
        (b"[[[[]]]]" + b"[" * 61, False),
    ],
)
def test_what_a_parser_would_recurse_through_is_counted(text: bytes, within: bool) -> None:
    assert nesting_within(text) is within


def test_a_body_too_deep_is_refused_before_parsing_and_one_not_json_is_a_value_error() -> None:
    with pytest.raises(InvalidJson):
        loads(b"[" * 200_000)
    with pytest.raises(InvalidJson):
        loads("{" * 100 + "}" * 100)
    with pytest.raises(json.JSONDecodeError):
        loads(b"[1,")
    assert loads(b'{"a": [1, {"b": "[[["}]}') == {"a": [1, {"b": "[[["}]}
