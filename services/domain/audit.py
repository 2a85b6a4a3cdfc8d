"""The tamper-evident record: canonical forms, hash links, and what verification finds.

Every custody event and refused scan is a link in its order's chain (a refused scan that names
no bag its scanner may see joins the chain of the scanner's site, ``site:<id>``; before there
were those, the one unattributed chain): ``hash = SHA-256(prev_hash, canonical(record))``, with
a gapless ``position``. Checkpoints record the head of every chain and are chained themselves,
so a deleted tail, a deleted order or a rewritten chain is found by comparing them. Signatures
are bound to the hash of the record they sign.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

GENESIS = "0" * 64
# the chain of refused scans that name no bag their scanner may see, kept before each site had
# one of its own (``site:<id>``): it verifies as it always did, and nothing new joins it
UNATTRIBUTED = "unattributed"
ORDER_CHAIN, SITE_CHAIN = "order:", "site:"


def chain_key(order_id: int | None, site_id: int | None = None) -> str:
    """A record's chain: its order's; for a refusal that names no bag its scanner may see,
    the chain of the scanner's site (``site_id``), or the unattributed chain of old."""
    if order_id is not None:
        return f"{ORDER_CHAIN}{order_id}"
    if site_id is not None:
        return f"{SITE_CHAIN}{site_id}"
    return UNATTRIBUTED


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive timestamps have no canonical form")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, Enum):
        return value.value
    return value


def canonical_time(value: dt.datetime) -> str:
    """A timestamp as every hash and signature spells it."""
    return str(_plain(value))


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's hashed content as JSON can carry it: its canonical form is unchanged."""
    return {key: _plain(value) for key, value in record.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, Enum)):
        return _plain(value)
    raise TypeError(f"{type(value).__name__} has no canonical form")


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
)


def canonical(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTC timestamps to the microsecond, enums as their values.

    The encoder turns timestamps and enums into their canonical text as it meets them (a
    string enum is its value already), rather than copying every record first: the same
    bytes, at a fraction of the cost, for the millions of records a verify reads."""
    return _CANONICAL.encode(record).encode()


def link(prev_hash: str, record: Mapping[str, Any]) -> str:
    return chained(prev_hash, canonical(record))


def chained(prev_hash: str, body: bytes) -> str:
    """The hash of a record whose canonical form is ``body``, after ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


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
    # the canonical bytes themselves, where the reader rendered them as it read (its content
    # then holds what an identity check needs, not every field)
    sealed: bytes | None = None

    def links_up(self) -> bool:
        """Whether the record's hash is the hash of its predecessor's and its content."""
        body = self.sealed if self.sealed is not None else canonical(self.content)
        return chained(self.prev_hash, body) == self.hash


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with a chain, named precisely."""

    chain: str
    position: int | None
    table: str | None
    id: int | None
    problem: str

    def __str__(self) -> str:
        where = (
            f"{self.table} id {self.id}" if self.table and self.id is not None else self.table
        ) or "chain"
        at = f" at position {self.position}" if self.position is not None else ""
        return f"{self.chain}{at} ({where}): {self.problem}"


EDITED = "its content does not match its hash: the record was edited"


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
        if not item.links_up():
            yield Finding(
                chain,
                item.position,
                item.table,
                item.id,
                EDITED,
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
REVIEW_FIELDS = (
    "source",
    "source_id",
    "order_id",
    "outcome",
    "note",
    "correction_id",
    "reviewer_id",
    "printed_name",
    "reviewer_email",
    "reviewed_at",
)
TABLE_FIELDS = {"custody_events": EVENT_FIELDS, "refused_scans": REFUSAL_FIELDS}
# Sealed only where present: records from before identity was sealed have none, and hash as
# they always did; on any newer record, removing it changes the hash like any other edit.
SEALED_IF_PRESENT = {
    "custody_events": ("identity", "details", "signing"),
    # a refusal's site chain (none: an order's, or the unattributed chain of old)
    "refused_scans": ("identity", "chain_site_id"),
}


def canonical_layout(table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A table's canonical form laid out for a reader that has each field's JSON text
    already: ``(literals, fields)``, one more literal than fields, so that the record's
    canonical bytes are ``literals[0] + text(fields[0]) + literals[1] + ... + literals[-1]``.
    The literals hold the keys, sorted as ``canonical`` sorts them, and the table's name. An
    optional field's text is ``optional_text(name, json)`` when the record has it and nothing
    when it has not (the comma comes and goes with it)."""
    keys = sorted(("table", *TABLE_FIELDS[table], *SEALED_IF_PRESENT[table]))
    if keys[0] in SEALED_IF_PRESENT[table]:
        raise ValueError(f"{keys[0]!r} would open the object: its comma has nowhere to go")
    literals, fields, pending = [], [], "{"
    for at, key in enumerate(keys):
        comma = "," if at else ""
        if key == "table":
            pending += f"{comma}{_CANONICAL.encode(key)}:{_CANONICAL.encode(table)}"
            continue
        if key not in SEALED_IF_PRESENT[table]:
            pending += f"{comma}{_CANONICAL.encode(key)}:"
        literals.append(pending)
        fields.append(key)
        pending = ""
    literals.append(pending + "}")
    return tuple(literals), tuple(fields)


def optional_text(name: str, text: str) -> str:
    """An optional field's text in ``canonical_layout``, when the record has it."""
    return f",{_CANONICAL.encode(name)}:{text}"


def content(table: str, row: Any) -> dict[str, Any]:
    """The hashed content of a row (an ORM object or a mapping of a selected row)."""
    get = _getter(row)
    body = {"table": table, **{name: get(name) for name in TABLE_FIELDS[table]}}
    for optional in SEALED_IF_PRESENT[table]:
        value = get(optional) if _has(row, optional) else None
        if value is not None:
            body[optional] = value
    return body


def signature_content(row: Any) -> dict[str, Any]:
    get = _getter(row)
    body = {name: get(name) for name in SIGNATURE_FIELDS}
    for optional in ("signer_email", "covers"):
        value = get(optional) if _has(row, optional) else None
        if value is not None:
            body[optional] = value
    return body


def review_content(row: Any) -> dict[str, Any]:
    """A QA review's sealed content; its hash links it to the hash of the record reviewed."""
    get = _getter(row)
    return {name: get(name) for name in REVIEW_FIELDS}


def _getter(row: Any) -> Any:
    return row.__getitem__ if isinstance(row, Mapping) else row.__getattribute__


def _has(row: Any, name: str) -> bool:
    return name in row if isinstance(row, Mapping) else hasattr(row, name)


# identity, sealed in the chain


# How an order's opening record seals an identity it must not show, named in the seal itself
# (``identity.order.digest``): orders recorded before per-order salts seal no such name.
SALTED_DIGEST = "hmac-sha256/order-salt"
SALT_BYTES = 32  # an order's identity salt: 256 random bits, kept as 64 hex digits


def identity_digest(salt: str, value: str) -> str:
    """An identity (the patient reference; any other identity an order seals) as the chain
    seals it: HMAC-SHA256 keyed by the order's random salt (``orders.identity_salt``, hex),
    over the value's UTF-8. The salt never leaves the database for a reader who may not see
    the value, so a digest in an export cannot be tested against guesses."""
    return hmac.new(bytes.fromhex(salt), value.encode(), hashlib.sha256).hexdigest()


def patient_digest(coi: str, patient_ref: str) -> str:
    """The construction of orders recorded before per-order salts (migration 0007 and until
    0013): an HMAC keyed by the order's COI. Anyone holding the COI can test guesses against
    it, so new orders seal ``identity_digest`` instead; these records cannot be re-hashed,
    and verification tells the two apart by what the seal names."""
    return hmac.new(coi.encode(), patient_ref.encode(), hashlib.sha256).hexdigest()


def sealed_patient_digest(
    opened: Mapping[str, Any], *, coi: str, patient_ref: str, salt: str | None
) -> str | None:
    """What the opening record ``opened`` (its ``identity.order``) should hold for this
    patient reference, by the construction the seal names; None when it cannot be computed
    (a salted seal without the salt, or a construction this code does not know)."""
    construction = opened.get("digest")
    if construction is None:
        return patient_digest(coi, patient_ref)
    if construction == SALTED_DIGEST and salt is not None:
        try:
            return identity_digest(salt, patient_ref)
        except ValueError:  # not hex: no digest of ours
            return None
    return None


def site_seal(code: str, fin: str | None) -> list[str | None]:
    return [code, fin]


@dataclass(frozen=True, slots=True)
class LiveOrder:
    coi: str
    patient_ref: str
    product: str
    site_ids: tuple[int, int, int]  # collection, manufacturing, treatment
    birth_date: str | None = None  # ISO date, when recorded at enrolment
    name: str | None = None  # the patient's name, when recorded at enrolment
    identity_salt: str | None = None  # None: recorded before per-order salts
    merged_patient_ref: str | None = None  # the surviving reference after a patient merge


@dataclass(frozen=True, slots=True)
class LiveUnit:
    din: str
    kind: str
    order_id: int


@dataclass(frozen=True, slots=True)
class LiveSite:
    code: str
    fin: str | None


@dataclass
class Live:
    """The identity rows as the database holds them now, to hold against what the chain sealed.
    ``sealed_orders`` and ``sealed_units`` collect what some record sealed, so that a row no
    record ever sealed (inserted behind the application's back) is found too."""

    orders: Mapping[int, LiveOrder]
    units: Mapping[int, LiveUnit]
    users: Mapping[int, str]  # id -> e-mail
    sites: Mapping[int, LiveSite]
    sealed_orders: set[int] = field(default_factory=set)
    sealed_units: set[int] = field(default_factory=set)


def identity_finding(item: Link, live: Live) -> Finding | None:
    """What differs between the identity a record sealed and the rows it names, or None.
    Names the row that changed (orders, units, users, sites) and the record that sealed it."""
    sealed = item.content.get("identity")
    if sealed is None:
        return None  # recorded before identity was sealed; its order's seal covers it
    where = f"{item.table} id {item.id} ({item.chain} position {item.position})"

    def changed(table: str, row_id: int, what: str, now: Any, then: Any) -> Finding:
        # a patient reference is never written out, not even in a finding
        said = (
            f"its {what} is {now!r}, but {where} sealed {then!r}"
            if now is not None or then is not None
            else f"its {what} is not the one {where} sealed"
        )
        return Finding(
            item.chain, item.position, table, row_id, f"{said}: an identity was rewritten"
        )

    record = item.content
    order_id = record["order_id"]
    if order_id is not None:
        order = live.orders.get(order_id)
        if order is None:
            return Finding(item.chain, item.position, "orders", order_id, "the order is gone")
        if order.coi != sealed["coi"]:
            return changed("orders", order_id, "COI", order.coi, sealed["coi"])
        opened = sealed.get("order")
        if opened is not None:
            live.sealed_orders.add(order_id)
            finding = _order_finding(order_id, order, opened, live, changed)
            if finding is not None:
                return finding
    unit_id = record["unit_id"]
    if unit_id is not None:
        unit = live.units.get(unit_id)
        if unit is None:
            return Finding(item.chain, item.position, "units", unit_id, "the bag is gone")
        if unit.din != sealed["din"]:
            return changed("units", unit_id, "DIN", unit.din, sealed["din"])
        if unit.kind != sealed["kind"]:
            return changed("units", unit_id, "kind", unit.kind, sealed["kind"])
        if order_id is not None and unit.order_id != order_id:
            return changed("units", unit_id, "order", unit.order_id, order_id)
        live.sealed_units.add(unit_id)
    actor_id = record["actor_id"]
    if live.users.get(actor_id) != sealed["actor"]:
        return changed("users", actor_id, "e-mail", live.users.get(actor_id), sealed["actor"])
    for column, key in (("site_id", "site"), ("custodian_site_id", "custodian")):
        site_id = record.get(column)
        if site_id is None or key not in sealed:
            continue
        site = live.sites.get(site_id)
        code = site.code if site else None
        if code != sealed[key]:
            return changed("sites", site_id, "code", code, sealed[key])
    return None


def merge_finding(items: Sequence[Link], live: Live) -> Finding | None:
    """An order's merged patient reference (``orders.merged_patient_ref``) is the one its
    latest patient_merge record sealed (``details.patient_to``, a keyed digest), and there is
    none without such a record: a reference rewritten behind the chain's back is found."""
    if not items:
        return None
    order_id = items[0].content.get("order_id")
    order = live.orders.get(order_id) if isinstance(order_id, int) else None
    if order is None:
        return None
    sealed_to, at = None, None
    for item in items:
        details = item.content.get("details")
        if isinstance(details, Mapping) and "patient_to" in details:
            sealed_to, at = details["patient_to"], item
    if order.merged_patient_ref is None and sealed_to is None:
        return None
    now = (
        None
        if order.merged_patient_ref is None
        else identity_digest(order.identity_salt, order.merged_patient_ref)
        if order.identity_salt
        else patient_digest(order.coi, order.merged_patient_ref)
    )
    if now == sealed_to:
        return None
    where = (
        f"{at.table} id {at.id} ({at.chain} position {at.position})"
        if at is not None
        else "no record"
    )
    return Finding(
        items[0].chain,
        at.position if at is not None else None,
        "orders",
        order_id,
        f"its merged patient reference is not the one {where} sealed: an identity was rewritten",
    )


def _order_finding(
    order_id: int, order: LiveOrder, opened: Mapping[str, Any], live: Live, changed: Any
) -> Finding | None:
    """The record that opens an order's chain seals who the order is for and where it goes."""
    expected = sealed_patient_digest(
        opened, coi=order.coi, patient_ref=order.patient_ref, salt=order.identity_salt
    )
    if expected is None or expected != opened["patient"]:
        # the reference, or the salt its digest is keyed by (neither is ever written out)
        return changed("orders", order_id, "patient reference", None, None)
    for key, value, what in (
        ("birth_date", order.birth_date, "date of birth"),
        ("name", order.name, "patient's name"),
    ):
        sealed = opened.get(key)
        if (sealed is None) != (value is None) or (
            sealed is not None
            and sealed_patient_digest(
                opened, coi=order.coi, patient_ref=value or "", salt=order.identity_salt
            )
            != sealed
        ):
            return changed("orders", order_id, what, None, None)
    if order.product != opened["product"]:
        return changed("orders", order_id, "product", order.product, opened["product"])
    for site_id, sealed_site in zip(order.site_ids, opened["sites"], strict=True):
        site = live.sites.get(site_id)
        now = site_seal(site.code, site.fin) if site else None
        if now != list(sealed_site):
            return changed("sites", site_id, "code and FIN", now, list(sealed_site))
    # an order recorded before identity was sealed: its seal lists what existed then
    for unit_id_text, (din, kind) in opened.get("units", {}).items():
        unit_id = int(unit_id_text)
        unit = live.units.get(unit_id)
        now_unit = [unit.din, unit.kind] if unit else None
        if now_unit != [din, kind] or (unit and unit.order_id != order_id):
            return changed("units", unit_id, "DIN and kind", now_unit, [din, kind])
        live.sealed_units.add(unit_id)
    for user_id_text, email in opened.get("actors", {}).items():
        if live.users.get(int(user_id_text)) != email:
            return changed(
                "users", int(user_id_text), "e-mail", live.users.get(int(user_id_text)), email
            )
    for site_id_text, code in opened.get("site_codes", {}).items():
        site = live.sites.get(int(site_id_text))
        if (site.code if site else None) != code:
            return changed("sites", int(site_id_text), "code", site.code if site else None, code)
    return None


def unsealed_finding(live: Live, *, order_ids: Iterable[int] | None = None) -> Finding | None:
    """An order or a bag that no record of any chain ever sealed: a row written behind the
    application's back (the application seals every order and bag in the transaction that
    makes it)."""
    order, unit = unsealed_findings(live, order_ids=order_ids)
    return order or unit


def unsealed_findings(
    live: Live, *, order_ids: Iterable[int] | None = None
) -> tuple[Finding | None, Finding | None]:
    """The first unsealed order (by id) and the first unsealed bag (by id), apart: a verify
    split over processes picks the first of each across them."""
    orders = sorted(live.orders if order_ids is None else order_ids)
    first_order = first_unit = None
    for order_id in orders:
        if order_id in live.orders and order_id not in live.sealed_orders:
            first_order = Finding(
                chain_key(order_id), None, "orders", order_id, "no record of its chain seals it"
            )
            break
    wanted = set(orders)
    for unit_id, unit in sorted(live.units.items()):
        if unit.order_id in wanted and unit_id not in live.sealed_units:
            first_unit = Finding(
                chain_key(unit.order_id), None, "units", unit_id, "no record of its chain seals it"
            )
            break
    return first_order, first_unit
