"""The canonical form laid out for a reader with each field's JSON text (the verify's fast
reading) is ``canonical``, byte for byte, whatever the fields hold."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.domain.audit import (
    SEALED_IF_PRESENT,
    TABLE_FIELDS,
    canonical,
    canonical_layout,
    optional_text,
)

UTC_TIMES = st.datetimes(
    min_value=dt.datetime(1000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=dt.datetime(9999, 12, 31),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), UTC_TIMES)
DOCUMENTS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=8,
)


def _laid_out(table: str, record: dict[str, Any]) -> bytes:
    literals, fields = canonical_layout(table)
    texts = []
    for name in fields:
        if name in SEALED_IF_PRESENT[table]:
            present = record.get(name) is not None
            texts.append(optional_text(name, canonical(record[name]).decode()) if present else "")
        else:
            texts.append(canonical(record[name]).decode())  # the field's JSON text alone
    pieces = [piece for pair in zip(literals, [*texts, ""], strict=True) for piece in pair]
    return "".join(pieces).encode()


@pytest.mark.parametrize("table", sorted(TABLE_FIELDS))
@given(data=st.data())
def test_the_layout_joined_is_the_canonical_form(table: str, data: st.DataObject) -> None:
    record: dict[str, Any] = {name: data.draw(SCALARS) for name in TABLE_FIELDS[table]}
    for name in SEALED_IF_PRESENT[table]:
        document = data.draw(st.one_of(st.none(), st.dictionaries(st.text(), DOCUMENTS)))
        if document is not None:
            record[name] = document
    expected = canonical({"table": table, **record})
    assert _laid_out(table, record) == expected
