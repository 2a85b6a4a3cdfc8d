"""Sealing records into their chains, checkpoints, verification, corrections and signatures."""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.db.models import (
    AuditCheckpoint,
    ChainHead,
    CustodyEvent,
    Order,
    RefusedScan,
    Review,
    Signature,
    Site,
    Unit,
    User,
)
from services.db.types import UTCDateTime
from services.domain.audit import (
    EDITED,
    GENESIS,
    ORDER_CHAIN,
    SEALED_IF_PRESENT,
    SITE_CHAIN,
    TABLE_FIELDS,
    UNATTRIBUTED,
    Finding,
    Link,
    Live,
    LiveOrder,
    LiveSite,
    LiveUnit,
    canonical,
    canonical_layout,
    canonical_time,
    chain_key,
    checkpoint_content,
    content,
    identity_finding,
    link,
    merge_finding,
    optional_text,
    review_content,
    signature_content,
    signature_hash,
    unsealed_findings,
    verify_chain,
)
from services.domain.errors import SigningKeyMissing
from services.domain.evidence import merkle_root, sign, signature_valid, statement
from services.operations import keys
from services.operations.notifications import notify_witnesses

EVENTS, REFUSALS = "custody_events", "refused_scans"  # the two tables a chain runs through
NO_TRUST = keys.Trust(signer=None)  # no key trusted: any signed checkpoint is a finding


# verification


@dataclass(frozen=True)
class Report:
    records: int
    chains: int
    checkpoints: int
    signatures: int
    finding: Finding | None

    @property
    def ok(self) -> bool:
        return self.finding is None


def _sealed_columns(model: Any, table: str) -> list[Any]:
    """What a record's link needs: its place, its hashes and the fields its hash covers."""
    names = ("id", "prev_hash", "hash", *TABLE_FIELDS[table], *SEALED_IF_PRESENT[table])
    return [model.__table__.c[name] for name in dict.fromkeys(names)]


def _chain_queries(
    columns: Callable[[Any, str], list[Any]],
    order_id: int | None,
    part: int,
    parts: int,
    *,
    unattributed: bool = False,
    site_id: int | None = None,
) -> tuple[Any, Any]:
    """The two tables' records in (chain, position) order (orders' chains, then sites', then
    the unattributed chain): all, one order's, one part's, one site's chain (``site_id``), or
    (``unattributed``) the chain of refusals of old that name no bag."""
    events = sa.select(*columns(CustodyEvent, EVENTS)).order_by(
        col(CustodyEvent.order_id), col(CustodyEvent.chain_position), col(CustodyEvent.id)
    )
    refusals = sa.select(*columns(RefusedScan, REFUSALS)).order_by(
        sa.case(
            (col(RefusedScan.order_id).is_not(None), 0),
            (col(RefusedScan.chain_site_id).is_not(None), 1),
            else_=2,
        ),
        col(RefusedScan.order_id),
        col(RefusedScan.chain_site_id),
        col(RefusedScan.chain_position),
        col(RefusedScan.id),
    )
    if order_id is not None:
        events = events.where(col(CustodyEvent.order_id) == order_id)
        refusals = refusals.where(col(RefusedScan.order_id) == order_id)
    if unattributed or site_id is not None:
        events = events.where(sa.false())
        refusals = refusals.where(
            col(RefusedScan.order_id).is_(None),
            col(RefusedScan.chain_site_id).is_(None)
            if site_id is None
            else col(RefusedScan.chain_site_id) == site_id,
        )
    if parts > 1:
        events = events.where(col(CustodyEvent.order_id) % parts == part)
        mine = col(RefusedScan.order_id) % parts == part
        refusals = refusals.where(
            sa.or_(mine, col(RefusedScan.order_id).is_(None)) if part == 0 else mine
        )
    return events, refusals


def _links(
    session: Session,
    order_id: int | None = None,
    *,
    part: int = 0,
    parts: int = 1,
    unattributed: bool = False,
    site_id: int | None = None,
) -> Iterator[Link]:
    """Every record, in (chain, position) order, streamed from both tables as plain rows (no
    ORM objects: a verify of millions of records builds none)."""
    events, refusals = _chain_queries(
        _sealed_columns, order_id, part, parts, unattributed=unattributed, site_id=site_id
    )

    def stream(query: Any, table: str) -> Iterator[Link]:
        for row in session.execute(query.execution_options(yield_per=5000)).mappings():
            yield Link(
                table=table,
                id=row["id"],
                chain=chain_key(row["order_id"], row.get("chain_site_id")),
                position=row["chain_position"],
                prev_hash=row["prev_hash"],
                hash=row["hash"],
                content=content(table, row),
            )

    yield from heapq.merge(stream(events, EVENTS), stream(refusals, REFUSALS), key=_sort_key)


def _links_of_chain(session: Session, chain: str) -> Iterator[Link]:
    """One chain's records through ``_links``: an order's, a site's or the unattributed chain."""
    if chain == UNATTRIBUTED:
        return _links(session, unattributed=True)
    if chain.startswith(SITE_CHAIN):
        return _links(session, site_id=int(chain.removeprefix(SITE_CHAIN)))
    return _links(session, int(chain.removeprefix(ORDER_CHAIN)))


def _sort_key(item: Link) -> tuple[int, int, int, bool]:
    """Orders' chains by order, then sites' by site, then the unattributed chain."""
    order = item.content["order_id"]
    if order is not None:
        return (0, order, item.position, item.table != EVENTS)
    site = item.content.get("chain_site_id")
    if site is not None:
        return (1, site, item.position, True)
    return (2, 0, item.position, True)


# what an identity check reads of a record (``identity_finding``), besides its sealed identity
_CHECKED = ("order_id", "unit_id", "actor_id", "site_id", "custodian_site_id")
# what hashed_links reads first of every record, in this order
_PLACE = ("id", "prev_hash", "hash", "chain_position")


def _json_text(column: Any, dialect: str) -> Any:
    """The JSON text of a sealed field's canonical value, rendered by the database (in C, once
    per value, rather than in Python per record): a timestamp as its UTC text to the
    microsecond, a flag as true or false, anything else as the database writes it in JSON
    (PostgreSQL's ``to_json``, SQLite's ``json_quote``), null for no value. A JSON document
    comes as its stored text, for the caller to put in canonical form."""
    postgres = dialect == "postgresql"
    if isinstance(column.type, sa.JSON):  # cast: psycopg would parse a json column itself
        return sa.cast(column, sa.Text)
    if isinstance(column.type, UTCDateTime):
        text: Any
        if postgres:
            text = sa.func.to_char(sa.func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        else:  # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (always six digits), in UTC
            text = sa.func.replace(sa.type_coerce(column, sa.Text), " ", "T") + "Z"
        quote = sa.literal_column("'\"'", sa.Text)
        rendered: Any = quote + text + quote
    elif isinstance(column.type, sa.Boolean):
        rendered = sa.case((column.is_(True), "true"), (column.is_(False), "false"))
    elif postgres:
        rendered = sa.cast(sa.func.to_json(column), sa.Text)
    else:
        rendered = sa.func.json_quote(column)
    return sa.func.coalesce(rendered, "null")


@functools.cache
def _rendered_columns(model: Any, table: str, dialect: str) -> tuple[Any, ...]:
    """What ``hashed_links`` reads of a record: its id, hashes and position, the fields an
    identity check reads, then its canonical form as the database renders it, in segments
    split by the JSON documents (which come as stored, for Python to put in canonical form):
    ``segment, document, segment, ...``. Built once per table and database (an order page's
    verify would otherwise spend more building it than reading its chain)."""
    fields = model.__table__.c
    literals, names = canonical_layout(table)
    head = [fields[name] for name in _PLACE]
    checked = [fields[name] for name in _CHECKED if name in fields]
    rendered: list[Any] = []
    parts: list[Any] = []

    def close() -> None:
        joined = parts[0] if parts else sa.literal("", sa.Text)
        for part in parts[1:]:
            joined = joined.op("||")(part)
        rendered.append(joined.label(f"_segment{len(rendered)}"))
        parts.clear()

    for literal, name in zip(literals, names, strict=False):
        if literal:
            parts.append(sa.literal(literal, sa.Text))
        if name in SEALED_IF_PRESENT[table]:
            close()
            rendered.append(_json_text(fields[name], dialect).label(f"_{name}"))
        else:
            parts.append(_json_text(fields[name], dialect))
    parts.append(sa.literal(literals[-1], sa.Text))
    close()
    return (*head, *checked, *rendered)


def hashed_links(
    session: Session, order_id: int | None = None, *, part: int = 0, parts: int = 1
) -> Iterator[Link]:
    """The records as ``_links`` reads them, for a verify, with each one's canonical bytes
    rendered as it is read: the database writes each field's JSON text and joins them along
    ``canonical_layout``, and each JSON document is put in canonical form once however many
    records carry it (an order's records mostly seal the same identity). A link's content
    holds what an identity check reads. The bytes are ``canonical`` of the record; where they
    do not match its hash, the verify reads that chain again through ``_links`` before
    calling it edited, so a difference in rendering is never taken for tampering."""
    dialect = session.get_bind().dialect.name

    def columns(model: Any, table: str) -> list[Any]:
        return list(_rendered_columns(model, table, dialect))

    events, refusals = _chain_queries(columns, order_id, part, parts)

    def stream(query: Any, table: str) -> Iterator[Link]:
        names = list(query.selected_columns.keys())
        checked = [name for name in _CHECKED if name in names]
        place = len(_PLACE)
        first = place + len(checked)  # where the rendered segments start
        optional = [(names.index(f"_{name}"), name) for name in SEALED_IF_PRESENT[table]]
        documents: dict[tuple[str, str], tuple[Any, str]] = {}
        rows = session.connection().execute(query.execution_options(yield_per=5000))
        for row in rows:
            body = dict(zip(checked, row[place:first], strict=True))
            pieces = list(row)
            for at, name in optional:
                text = pieces[at]
                known = documents.get((name, text))
                if known is None:
                    if len(documents) > 1024:
                        documents.clear()
                    # NULL: a record from before the field was sealed (a migration's NULL)
                    value = None if text is None else json.loads(text)
                    slot = "" if value is None else optional_text(name, canonical(value).decode())
                    known = documents[(name, text)] = (value, slot)
                if known[0] is not None:
                    body[name] = known[0]
                pieces[at] = known[1]
            yield Link(
                table=table,
                id=row[0],
                chain=chain_key(body["order_id"], body.get("chain_site_id")),
                position=row[3],
                prev_hash=row[1],
                hash=row[2],
                content=body,
                sealed="".join(pieces[first:]).encode(),
            )

    yield from heapq.merge(stream(events, EVENTS), stream(refusals, REFUSALS), key=_sort_key)


@dataclass(frozen=True)
class ChainPass:
    """One pass over chains (all, one order's, or one part of a verify split over processes)."""

    records: int
    chains: int
    seen: dict[str, tuple[int, str]]  # chain -> (length, head) of the chains that held
    finding: Finding | None  # the first broken chain's, in chain order
    unsealed: tuple[Finding | None, Finding | None]  # first unsealed order, first bag


def chain_order(chain: str) -> int:
    """Where a chain comes in a verify: orders by id, then sites by id, the unattributed
    chain last."""
    if chain.startswith(ORDER_CHAIN):
        return int(chain.removeprefix(ORDER_CHAIN))
    if chain.startswith(SITE_CHAIN):
        return 2**61 + int(chain.removeprefix(SITE_CHAIN))
    return 2**62


def verify_chains(
    session: Session,
    *,
    progress: Callable[[int], None] | None = None,
    order_id: int | None = None,
    links: Iterable[Link] | None = None,
    part: int = 0,
    parts: int = 1,
) -> ChainPass:
    """Check each chain record by record (links, hashes, the identities each record sealed),
    stopping at the first broken one. ``part`` of ``parts``: only the orders whose id is
    ``part`` modulo ``parts`` (and, in part 0, the unattributed chain)."""
    live = live_identities(session, order_id, part=part, parts=parts)
    records = chains = 0
    finding: Finding | None = None
    current: str | None = None
    batch: list[Link] = []
    seen: dict[str, tuple[int, str]] = {}

    def finish(chain: str, items: list[Link]) -> Finding | None:
        problem = next(verify_chain(chain, items), None)
        if problem is not None and links is None and problem.problem == EDITED:
            items = list(_links_of_chain(session, chain))  # read as the seal wrote it
            problem = next(verify_chain(chain, items), None)
        if problem is not None:
            return problem
        held: set[tuple[Any, ...]] = set()
        for item in items:
            # the same sealed identity naming the same rows holds as it did a record before
            # (identity_finding reads nothing else); the records of a bag mostly repeat it
            record = item.content
            same = (id(record.get("identity")), *map(record.get, _CHECKED))
            if same in held:
                continue
            problem = identity_finding(item, live)
            if problem is not None:
                return problem
            held.add(same)
        problem = merge_finding(items, live)
        if problem is not None:
            return problem
        seen[chain] = (len(items), items[-1].hash)
        return None

    stream = links if links is not None else hashed_links(session, order_id, part=part, parts=parts)
    for item in stream:
        records += 1
        if progress is not None and records % 1000 == 0:
            progress(records)
        if item.chain != current:
            if current is not None:
                finding = finish(current, batch)
                if finding:
                    break
            current, batch, chains = item.chain, [], chains + 1
        batch.append(item)
    else:
        if current is not None:
            finding = finish(current, batch)
    if progress is not None:
        progress(records)
    unsealed = unsealed_findings(live, order_ids=None if order_id is None else [order_id])
    return ChainPass(records, chains, seen, finding, unsealed)


def chain_heads(session: Session, order_id: int | None = None) -> dict[str, tuple[int, str]]:
    """Every chain's head (or one order's), read before the chains are (a record appended
    meanwhile then makes a chain longer than its head, never shorter)."""
    query = select(col(ChainHead.key), col(ChainHead.length), col(ChainHead.head))
    if order_id is not None:  # an order's page reads its own head, not every order's
        query = query.where(col(ChainHead.key) == chain_key(order_id))
    return {key: (length, head) for key, length, head in session.exec(query)}


def conclude(
    session: Session,
    passes: Sequence[ChainPass],
    *,
    heads: dict[str, tuple[int, str]],
    order_id: int | None = None,
    trust: keys.Trust = NO_TRUST,
) -> Report:
    """The rest of a verify, after its chain passes: the heads against the chains, an order or
    bag no record seals, the checkpoints, the signatures and the reviews. Names the first thing
    wrong, in the order a single pass would have met it. ``trust``: the keys configuration
    trusts (``keys.installation_trust``); a checkpoint signed by any other is a finding."""
    records = sum(p.records for p in passes)
    chains = sum(p.chains for p in passes)
    broken = [p.finding for p in passes if p.finding is not None]
    finding = min(broken, key=lambda f: chain_order(f.chain)) if broken else None
    seen: dict[str, tuple[int, str]] = {}
    for one in passes:
        seen.update(one.seen)
    if finding is None:
        finding = _check_heads(seen, heads, order_id)
    if finding is None:
        orders = [p.unsealed[0] for p in passes if p.unsealed[0] is not None]
        units = [p.unsealed[1] for p in passes if p.unsealed[1] is not None]
        if orders:
            finding = min(orders, key=lambda f: f.id or 0)
        elif units:
            finding = min(units, key=lambda f: f.id or 0)
    checkpoints = 0
    if finding is None and order_id is None:
        checkpoints, finding = _check_checkpoints(session, seen, trust)
    signatures = 0
    if finding is None:
        signatures, finding = _check_signatures(session, order_id)
    if finding is None:
        finding = _check_reviews(session, order_id)
    return Report(records, chains, checkpoints, signatures, finding)


def verify(
    session: Session,
    *,
    progress: Callable[[int], None] | None = None,
    order_id: int | None = None,
    links: Iterable[Link] | None = None,
    trust: keys.Trust = NO_TRUST,
) -> Report:
    """Check every chain, every head, every checkpoint and every signature; stop at the first
    thing wrong and name it. ``progress`` is called with the records checked so far.
    ``links``: the order's chain when the caller has read it already (``order_chain``).
    ``trust``: the keys that may have signed checkpoints (an order's verify reads none)."""
    heads = chain_heads(session, order_id)
    one = verify_chains(session, progress=progress, order_id=order_id, links=links)
    return conclude(session, [one], heads=heads, order_id=order_id, trust=trust)


def live_identities(
    session: Session, order_id: int | None = None, *, part: int = 0, parts: int = 1
) -> Live:
    """The identity rows as they are now: the orders and bags (all, one order's, or one part's
    of ``parts``), every user's e-mail and every site's code and FIN."""
    order_query = sa.select(
        col(Order.id),
        col(Order.coi),
        col(Order.patient_ref),
        col(Order.product),
        col(Order.collection_site_id),
        col(Order.manufacturing_site_id),
        col(Order.treatment_site_id),
        col(Order.patient_birth_date),
        col(Order.patient_name),
        col(Order.identity_salt),
        col(Order.merged_patient_ref),
    )
    unit_query = select(col(Unit.id), col(Unit.din), col(Unit.kind), col(Unit.order_id))
    if parts > 1:
        order_query = order_query.where(col(Order.id) % parts == part)
        unit_query = unit_query.where(col(Unit.order_id) % parts == part)
    if order_id is not None:
        order_query = order_query.where(col(Order.id) == order_id)
        unit_query = unit_query.where(Unit.order_id == order_id)
    orders = {  # plain rows, not ORM objects: a verify holds every order
        key: LiveOrder(
            coi=coi,
            patient_ref=ref,
            product=product,
            site_ids=(one, two, three),
            birth_date=born.isoformat() if born is not None else None,
            name=name,
            identity_salt=salt,
            merged_patient_ref=merged,
        )
        for key, coi, ref, product, one, two, three, born, name, salt, merged in (
            session.connection().execute(order_query)
        )
    }
    units = {
        unit_id: LiveUnit(din=din, kind=kind.value, order_id=owner)
        for unit_id, din, kind, owner in session.exec(unit_query)
    }
    users = dict(session.exec(select(col(User.id), col(User.email))).all())
    sites = {
        site_id: LiveSite(code=code, fin=fin)
        for site_id, code, fin in session.exec(select(col(Site.id), col(Site.code), col(Site.fin)))
    }
    return Live(orders=orders, units=units, users=users, sites=sites)  # type: ignore[arg-type]


def _check_heads(
    seen: dict[str, tuple[int, str]], heads: dict[str, tuple[int, str]], order_id: int | None
) -> Finding | None:
    for key, (length, head) in sorted(heads.items()):
        if order_id is not None and key != chain_key(order_id):
            continue
        if length == 0:
            continue
        found = seen.get(key)
        if found is None:
            return Finding(key, None, None, None, f"all {length} records of the chain are gone")
        if found != (length, head):
            return Finding(
                key,
                found[0] + 1 if found[0] < length else length,
                None,
                None,
                f"the chain ends at position {found[0]}, but its head says {length}: records "
                "were deleted from its end",
            )
    return None


def _check_checkpoints(
    session: Session, seen: dict[str, tuple[int, str]], trust: keys.Trust
) -> tuple[int, Finding | None]:
    for stranger in keys.untrusted_keys(session, trust):
        return 0, Finding(
            f"key {stranger.key_id}",
            None,
            "signing_keys",
            None,
            "is not a trusted key (AUDIT_TRUSTED_KEYS or the signing key file): it was "
            "inserted behind the key holder's back, or an old key was left out of "
            "AUDIT_TRUSTED_KEYS after a rotation",
        )
    prev = GENESIS
    count = 0
    signed_since: int | None = None  # the first signed checkpoint: none after it is unsigned
    for row in session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.id))):
        count += 1
        where = f"checkpoint {row.id}"
        body = checkpoint_content(row.heads, row.records, row.taken_at)
        if row.prev_hash != prev or link(row.prev_hash, body) != row.hash:
            return count, Finding(
                where, None, "audit_checkpoints", row.id, "the checkpoint chain is broken"
            )
        problem = _signature_problem(row, trust)
        if problem is None and row.signature is None and signed_since is not None:
            problem = (
                f"it is unsigned, but checkpoint {signed_since} before it was signed: its "
                "signature was removed"
            )
        if problem:
            return count, Finding(where, None, "audit_checkpoints", row.id, problem)
        if row.signature is not None and signed_since is None:
            signed_since = row.id
        for key, (length, _head) in row.heads.items():
            found = seen.get(key)
            if found is None or found[0] < length:
                have = found[0] if found else 0
                return count, Finding(
                    key,
                    have + 1,
                    None,
                    None,
                    f"{where} ({row.taken_at.isoformat()}) saw {length} records; only {have} "
                    "remain: records were deleted",
                )
        prev = row.hash
    return count, None


def _signature_problem(row: AuditCheckpoint, trust: keys.Trust) -> str | None:
    """What is wrong with a checkpoint's root or signature (a checkpoint from before signing
    has neither)."""
    if row.root is not None and row.root != merkle_root(row.heads):
        return "its Merkle root is not the root of its heads"
    if row.signature is None:
        return None
    key = trust.keys.get(row.key_id or "")
    if key is None:
        return (
            f"it is signed by key {row.key_id}, which is not a trusted key (AUDIT_TRUSTED_KEYS "
            "or the signing key file)"
        )
    message = statement(
        taken_at=canonical_time(row.taken_at),
        records=row.records,
        root=row.root or "",
        prev_hash=row.prev_hash,
        digest=row.hash,
    )
    if not signature_valid(key, message, row.signature):
        return "its signature does not verify: it was altered or re-signed"
    return None


def _check_signatures(session: Session, order_id: int | None) -> tuple[int, Finding | None]:
    query = select(Signature, CustodyEvent).join(
        CustodyEvent,
        CustodyEvent.id == Signature.event_id,  # type: ignore[arg-type]
    )
    if order_id is not None:
        query = query.where(CustodyEvent.order_id == order_id)
    count = 0
    for signature, event in session.exec(query.order_by(col(Signature.id))):
        count += 1
        bound = signature.record_hash == event.hash
        sealed = signature.hash == signature_hash(
            signature.record_hash, signature_content(signature)
        )
        if not (bound and sealed):
            return count, Finding(
                chain_key(event.order_id),
                event.chain_position,
                "signatures",
                signature.id,
                "the signature is not bound to this record (it was moved or altered)"
                if not bound
                else "the signature's content does not match its hash: it was altered",
            )
    return count, None


def _check_reviews(session: Session, order_id: int | None) -> Finding | None:
    """Each QA review is bound to the hash of the record it reviewed, and sealed."""
    query = select(Review)
    if order_id is not None:
        query = query.where(Review.order_id == order_id)
    hashes: dict[tuple[str, int | None], tuple[str, str, int]] = {}
    for table, model in (("refused_scan", RefusedScan), ("custody_event", CustodyEvent)):
        ids = select(Review.source_id).where(Review.source == table)
        site: Any = (
            col(RefusedScan.chain_site_id) if model is RefusedScan else sa.null().label("site")
        )
        columns = (
            col(model.id),
            col(model.hash),
            col(model.order_id),
            site,
            col(model.chain_position),
        )
        for row_id, digest, chain_order, site_id, position in session.execute(
            sa.select(*columns).where(col(model.id).in_(ids))
        ):
            hashes[(table, row_id)] = (digest, chain_key(chain_order, site_id), position)
    for review in session.exec(query.order_by(col(Review.id))):
        digest, chain, position = hashes.get((review.source, review.source_id), ("", "", 0))
        bound = review.record_hash == digest
        sealed = review.hash == link(review.record_hash, review_content(review))
        if not (bound and sealed):
            return Finding(
                chain or chain_key(review.order_id),
                position or None,
                "reviews",
                review.id,
                "the review is not bound to the record it reviewed (moved or altered)"
                if not bound
                else "the review's content does not match its hash: it was altered",
            )
    return None


def checkpoint(
    session: Session, *, now: dt.datetime, signer: keys.Signer | None = None
) -> AuditCheckpoint:
    """Record every chain's head, chained to the previous checkpoint; signed with the
    installation's key (the Merkle root of the heads), and sent to the witnesses."""
    # one checkpoint at a time: the checkpoint table is append-only (no row of it can be locked
    # by the application's role), so the chain of unattributed refusals' head is the lock
    session.exec(select(ChainHead).where(ChainHead.key == UNATTRIBUTED).with_for_update()).first()
    last = session.exec(
        select(AuditCheckpoint).order_by(col(AuditCheckpoint.id).desc()).limit(1)
    ).first()
    if signer is None and last is not None and last.signature is not None:
        # an unsigned checkpoint after signed ones is what removing a signature leaves:
        # `audit verify` would call it so, and the record is append-only
        raise SigningKeyMissing(
            f"checkpoint {last.id} was signed, and no checkpoint after it may be unsigned: "
            "the signing key (SIGNING_KEY_PATH) is missing; restore it"
        )
    rows = [row for row in session.exec(select(ChainHead)) if row.length]
    heads: dict[str, Any] = {row.key: [row.length, row.head] for row in rows}
    records = sum(row.length for row in rows)
    prev = last.hash if last else GENESIS
    digest = link(prev, checkpoint_content(heads, records, now))
    root = merkle_root(heads)
    row = AuditCheckpoint(
        taken_at=now,
        heads=heads,
        records=records,
        prev_hash=prev,
        hash=digest,
        root=root,
    )
    if signer is not None:
        keys.record_key(session, signer, now)
        row.key_id = signer.key_id
        row.signature = sign(
            signer.private,
            statement(
                taken_at=canonical_time(now),
                records=records,
                root=root,
                prev_hash=prev,
                digest=digest,
            ),
        )
    session.add(row)
    session.flush()
    notify_witnesses(session, row)
    return row


def checkpoint_document(row: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as witnesses keep it: everything needed to check a database against it."""
    return {
        "type": "vein2vein.checkpoint",
        "id": row.id,
        "taken_at": canonical_time(row.taken_at),
        "records": row.records,
        "heads": row.heads,
        "root": row.root,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "key_id": row.key_id,
        "signature": row.signature,
    }


def signatures_of(
    session: Session, event_ids: list[int], *, order_id: int | None = None
) -> dict[int, list[tuple[Signature, str]]]:
    """Each event's signatures, oldest first, with the signer's e-mail. ``order_id``: the
    events are that order's whole record (joined, rather than hundreds of ids in an IN)."""
    found: dict[int, list[tuple[Signature, str]]] = {}
    if not event_ids:
        return found
    query = select(Signature, User.email).join(User, User.id == Signature.signer_id)  # type: ignore[arg-type]
    if order_id is not None:
        query = query.join(CustodyEvent, col(CustodyEvent.id) == col(Signature.event_id)).where(
            col(CustodyEvent.order_id) == order_id
        )
    else:
        query = query.where(col(Signature.event_id).in_(event_ids))
    rows = session.exec(query.order_by(col(Signature.id))).all()
    for row, email in rows:
        found.setdefault(row.event_id, []).append((row, email))
    return found


def record_count(session: Session) -> int:
    events = session.exec(select(sa.func.count()).select_from(CustodyEvent)).one()
    refusals = session.exec(select(sa.func.count()).select_from(RefusedScan)).one()
    return int(events) + int(refusals)


def all_links(session: Session) -> Iterator[Link]:
    """Every record of every chain, in (chain, position) order, streamed."""
    return _links(session)


def order_chain(session: Session, order: Order) -> list[Link]:
    return list(_links(session, order.id))
