"""What a superuser does after rewriting a record to hide it: every hash after it re-linked,
the signatures given in the acts re-bound to the new hashes, and the chain's head moved."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from services.db.models import Signature
from services.domain.audit import GENESIS, link, signature_content, signature_hash


def relink_statements(session: Session, key: str, links: list[Any]) -> tuple[list[str], str]:
    """The SQL that re-links ``links`` (a chain's records, as audit.order_chain reads them),
    re-binds their signatures, and moves the head of chain ``key``; and the new head."""
    previous, fixes, rehashed = GENESIS, [], {}
    for item in links:
        digest = link(previous, item.content)
        fixes.append(
            f"UPDATE {item.table} SET prev_hash = '{previous}', hash = '{digest}' "
            f"WHERE id = {item.id}"
        )
        if item.table == "custody_events":
            rehashed[item.id] = digest
        previous = digest
    if rehashed:
        for row in session.exec(
            select(Signature).where(col(Signature.event_id).in_(list(rehashed)))
        ).all():
            bound = rehashed[row.event_id]
            fixes.append(
                f"UPDATE signatures SET record_hash = '{bound}', hash = "
                f"'{signature_hash(bound, signature_content(row))}' WHERE id = {row.id}"
            )
    fixes.append(f"UPDATE chain_heads SET head = '{previous}' WHERE key = '{key}'")
    return fixes, previous
