"""Identifier numbers that are unique under concurrency: one counter row per kind/facility/year."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from services.db.models import IdentifierSequence
from services.domain.errors import SequenceExhausted

_table = IdentifierSequence.__table__  # type: ignore[attr-defined]


def next_number(session: Session, *, kind: str, fin: str, year: int, maximum: int) -> int:
    """The next number for ``kind`` at facility ``fin`` in ``year``.

    The counter row is created if missing, then incremented with UPDATE ... RETURNING: the row
    lock held to commit makes concurrent callers wait, so no number is handed out twice.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(_table)
        .values(kind=kind, fin=fin, year=year, last_value=0)
        .on_conflict_do_nothing(index_elements=["kind", "fin", "year"])
    )
    number = session.execute(
        sa.update(_table)
        .where(_table.c.kind == kind, _table.c.fin == fin, _table.c.year == year)
        .values(last_value=_table.c.last_value + 1)
        .returning(_table.c.last_value)
    ).scalar_one()
    if number > maximum:
        raise SequenceExhausted(
            f"facility {fin} has used every {kind.upper()} number for 20{year:02d}"
        )
    return int(number)
