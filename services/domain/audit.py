"""The tamper-evident record: canonical forms, hash links, and what verification finds.

Every custody event and refused scan is a link in its order's chain (refused scans that name no
known bag form one chain of their own): ``hash = SHA-256(prev_hash, canonical(record))``, with
a gapless ``position``. Checkpoints record the head of every chain and are chained themselves,
so a deleted tail, a deleted order or a rewritten chain is found by comparing them. Signatures
are bound to the hash of the record they sign.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

GENESIS = "0" * 64
UNATTRIBUTED = "unattributed"  # the chain of refused scans that name no known bag


def chain_key(order_id: int | None) -> str:
    return f"order:{order_id}" if order_id is not None else UNATTRIBUTED


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive timestamps have no canonical form")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, Enum):
        return value.value
    return value


def canonical(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTC timestamps to the microsecond, enums as their values."""
    plain = {key: _plain(value) for key, value in record.items()}
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(prev_hash: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(record)).hexdigest()


def signature_hash(record_hash: str, signature: Mapping[str, Any]) -> str:
    """A signature's own hash: the record's hash is part of what is signed."""
    return link(record_hash, signature)


@dataclass(frozen=True)
class Link:
    """One record as stored: where it claims to be in its chain and what it claims to hash."""

    table: str  # custody_events | refused_scans
    id: int
    chain: str
    position: int
    prev_hash: str
    hash: str
    content: Mapping[str, Any]  # the fields the hash covers


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with a chain, named precisely."""

    chain: str
    position: int | None
    table: str | None
    id: int | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.table} id {self.id}" if self.table else "chain"
        at = f" at position {self.position}" if self.position is not None else ""
        return f"{self.chain}{at} ({where}): {self.problem}"


def verify_chain(chain: str, links: Iterable[Link]) -> Iterator[Finding]:
    """Positions gapless from 1, each link naming its predecessor's hash, each hash matching
    its content. Yields what is wrong, in chain order."""
    expected_position, prev = 1, GENESIS
    for item in links:
        if item.position != expected_position:
            what = "missing" if item.position > expected_position else "duplicated or reordered"
            yield Finding(
                chain,
                expected_position,
                item.table,
                item.id,
                f"position {expected_position} is {what} (found {item.position} next)",
            )
            return
        if item.prev_hash != prev:
            yield Finding(
                chain,
                item.position,
                item.table,
                item.id,
                "does not link to the record before it (prev_hash differs): a record was "
                "removed, inserted or reordered",
            )
            return
        if link(item.prev_hash, item.content) != item.hash:
            yield Finding(
                chain,
                item.position,
                item.table,
                item.id,
                "its content does not match its hash: the record was edited",
            )
            return
        prev, expected_position = item.hash, expected_position + 1


def checkpoint_content(
    heads: Mapping[str, Any], records: int, taken_at: dt.datetime
) -> dict[str, Any]:
    """``heads``: chain key -> [length, head hash]."""
    return {
        "heads": {key: list(value) for key, value in sorted(heads.items())},
        "records": records,
        "taken_at": taken_at,
    }


# what each record's hash covers: every field but its database id and its own chain hashes
EVENT_FIELDS = (
    "order_id",
    "chain_position",
    "sequence",
    "unit_id",
    "batch_id",
    "batch_state",
    "reason",
    "corrects_id",
    "scan_id",
    "action",
    "from_state",
    "to_state",
    "site_id",
    "actor_id",
    "custodian_site_id",
    "shipment_id",
    "occurred_at",
    "recorded_at",
    "needs_review",
    "review_reason",
)
REFUSAL_FIELDS = (
    "order_id",
    "chain_position",
    "event_id",
    "action",
    "barcode",
    "site_code",
    "site_id",
    "actor_id",
    "unit_id",
    "code",
    "detail",
    "occurred_at",
    "recorded_at",
)
SIGNATURE_FIELDS = ("event_id", "signer_id", "printed_name", "meaning", "witness", "signed_at")
TABLE_FIELDS = {"custody_events": EVENT_FIELDS, "refused_scans": REFUSAL_FIELDS}


def content(table: str, row: Any) -> dict[str, Any]:
    """The hashed content of a row (an ORM object or a mapping of a selected row)."""
    get = row.__getitem__ if isinstance(row, Mapping) else row.__getattribute__
    return {"table": table, **{name: get(name) for name in TABLE_FIELDS[table]}}


def signature_content(row: Any) -> dict[str, Any]:
    get = row.__getitem__ if isinstance(row, Mapping) else row.__getattribute__
    return {name: get(name) for name in SIGNATURE_FIELDS}
