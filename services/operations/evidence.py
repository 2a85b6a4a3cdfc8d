"""An order's evidence bundle, and a database checked against a witness's copy of a checkpoint.

The bundle (format ``vein2vein-evidence/1``, JSON) holds:

- ``order``: the COI, product and the three sites (the patient reference only for a site that
  may see it);
- ``chain``: the order's chain (``order:<id>``), each record with its position, ``prev_hash``,
  ``hash`` and the ``content`` the hash covers (as ``services.domain.audit.content`` makes it),
  and the chain's head;
- ``signatures`` and ``reviews``: each bound to a record's hash, with its sealed content;
- ``checkpoints``: every signed checkpoint that covers the chain: its statement (time, record
  count, Merkle root, previous checkpoint, hash), the signature and key id, and this chain's
  leaf with the path to the root (other orders' heads are not in the bundle);
- ``installation.public_keys``: the keys that signed them.

``services.domain.evidence.verify_bundle`` checks it with no database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import AuditCheckpoint, Order, Review, Signature, Site
from services.domain.audit import (
    Finding,
    canonical_time,
    chain_key,
    plain,
    review_content,
    signature_content,
    verify_chain,
)
from services.domain.custody import Actor
from services.domain.errors import InvalidRequest, NotFound
from services.domain.evidence import (
    BUNDLE_FORMAT,
    decode_key,
    merkle_proof,
    merkle_root,
    signature_valid,
    statement,
)
from services.operations import access, keys
from services.operations.audit import all_links, order_chain


def _order(session: Session, actor: Actor | None, coi: str) -> Order:
    if actor is not None:
        return access.order_by_coi(session, actor, coi)
    order = session.exec(select(Order).where(Order.coi == coi)).first()
    if order is None:
        raise NotFound(f"no order {coi}")
    return order


def bundle(session: Session, *, actor: Actor | None, coi: str, now: dt.datetime) -> dict[str, Any]:
    """The order's evidence bundle; ``actor=None``: the installation's operator."""
    order = _order(session, actor, coi)
    key = chain_key(order.id)
    links = order_chain(session, order)
    records = [
        {
            "position": item.position,
            "table": item.table,
            "prev_hash": item.prev_hash,
            "hash": item.hash,
            "content": plain(item.content),
        }
        for item in links
    ]
    event_ids = [item.id for item in links if item.table == "custody_events"]
    signatures = (
        session.exec(
            select(Signature)
            .where(col(Signature.event_id).in_(event_ids))
            .order_by(col(Signature.id))
        ).all()
        if event_ids
        else []
    )
    reviews = session.exec(
        select(Review).where(Review.order_id == order.id).order_by(col(Review.id))
    ).all()
    checkpoints, used = [], set()
    for row in session.exec(
        select(AuditCheckpoint)
        .where(col(AuditCheckpoint.signature).is_not(None))
        .order_by(col(AuditCheckpoint.id))
    ).all():
        if key not in row.heads:
            continue
        length, head = row.heads[key]
        checkpoints.append(
            {
                "id": row.id,
                "taken_at": canonical_time(row.taken_at),
                "records": row.records,
                "root": row.root,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
                "key_id": row.key_id,
                "signature": row.signature,
                "leaf": {"length": length, "head": head},
                "proof": merkle_proof(row.heads, key),
            }
        )
        used.add(row.key_id)
    sites = {site.id: site.code for site in session.exec(select(Site)).all()}
    summary: dict[str, Any] = {
        "coi": order.coi,
        "product": order.product,
        "collection_site": sites[order.collection_site_id],
        "manufacturing_site": sites[order.manufacturing_site_id],
        "treatment_site": sites[order.treatment_site_id],
    }
    if actor is None or access.may_see_patient_ref(actor, order):
        summary["patient_ref"] = order.patient_ref
    return {
        "format": BUNDLE_FORMAT,
        "exported_at": canonical_time(now),
        "order": summary,
        "chain": {
            "key": key,
            "head": [len(records), records[-1]["hash"]] if records else [0, None],
            "records": records,
        },
        "signatures": [
            {
                "record_hash": row.record_hash,
                "hash": row.hash,
                "content": plain(signature_content(row)),
            }
            for row in signatures
        ],
        "reviews": [
            {
                "record_hash": row.record_hash,
                "hash": row.hash,
                "content": plain(review_content(row)),
            }
            for row in reviews
        ],
        "checkpoints": checkpoints,
        "installation": {
            "public_keys": [
                {"key_id": k.key_id, "algorithm": k.algorithm, "public_key": k.public_key}
                for k in keys.public_keys(session)
                if k.key_id in used
            ]
        },
    }


# a witness's copy of a checkpoint


def verify_witness(session: Session, witness: dict[str, Any]) -> Finding | None:
    """Check the database against a checkpoint kept outside it (by a witness): every chain it
    names must still lead, record by record, to the head it saw, and the database's copy of
    the checkpoint must be the same. Catches a database whose records, chain heads and
    checkpoints were all rewritten to agree with each other."""
    document: dict[str, Any] = witness.get("data", witness) if isinstance(witness, dict) else {}
    if not isinstance(document, dict):
        document = {}
    try:
        number = int(document["id"])
        heads = dict(document["heads"])
        root = str(document["root"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest(
            "the file is not a vein2vein checkpoint (as witnesses receive it)"
        ) from None
    where = f"witnessed checkpoint {number} ({document.get('taken_at')})"
    if merkle_root(heads) != root:
        return Finding(where, None, None, None, "the witness's own copy is not consistent")
    public = {k.key_id: decode_key(k.public_key) for k in keys.public_keys(session)}
    if document.get("signature"):
        message = statement(
            taken_at=str(document["taken_at"]),
            records=int(document["records"]),
            root=root,
            prev_hash=str(document["prev_hash"]),
            digest=str(document["hash"]),
        )
        key = public.get(str(document.get("key_id")))
        if key is None or not signature_valid(key, message, str(document["signature"])):
            return Finding(where, None, None, None, "its signature is not the installation's key's")
    chains: dict[str, list[Any]] = {}
    for item in all_links(session):
        if item.chain in heads:
            chains.setdefault(item.chain, []).append(item)
    for key, (length, head) in sorted(heads.items()):
        items = chains.get(key, [])
        if len(items) < length:
            return Finding(
                key,
                len(items) + 1,
                None,
                None,
                f"{where} saw {length} records; "
                f"the database has {len(items)}: records were deleted",
            )
        problem = next(verify_chain(key, items[:length]), None)
        if problem is not None:
            return problem
        if items[length - 1].hash != head:
            return Finding(
                key,
                None,
                None,
                None,
                f"its records up to position {length} no longer lead to the head {where} saw: "
                "the chain was rewritten (records, heads and checkpoints changed together)",
            )
    row = session.get(AuditCheckpoint, number)
    if row is None or row.hash != document.get("hash"):
        return Finding(
            where,
            None,
            "audit_checkpoints",
            number,
            "the database's copy of this checkpoint differs from the witness's",
        )
    return None
