"""An order's evidence bundle, and a database checked against a witness's copy of a checkpoint.

The bundle (format ``vein2vein-evidence/2``, JSON) holds:

- ``order``: the header: the COI, product and the three sites; the patient reference and the
  order's identity salt (which checks it against the sealed digest) only for a reader who may
  see the reference;
- ``chain``: the order's chain (``order:<id>``), each record with its position, ``prev_hash``,
  ``hash`` and the ``content`` its hash covers (as ``services.domain.audit.content`` makes it),
  and the chain's head. For a reader who may not see the patient reference, the record that
  seals an order recorded before per-order salts carries ``withheld`` instead of its content
  (its COI-keyed digest could be guessed): the chain still links through its hash;
- ``signatures`` and ``reviews``: each bound to a record's hash, with its sealed content;
- ``checkpoints``: every signed checkpoint that covers the chain: its statement (time, record
  count, Merkle root, previous checkpoint, hash), the signature and key id, and this chain's
  leaf with the path to the root (other orders' heads are not in the bundle);
- ``installation.public_keys``: the keys that signed them, as configuration trusts them;
- ``export_signature``: the installation's Ed25519 signature over all of the above (absent
  when the installation has no signing key).

``services.domain.evidence_check.verify_bundle`` checks it with no database.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from sqlmodel import Session, col, select

from services.db.models import AuditCheckpoint, Order, Review, Signature, Site
from services.domain.audit import (
    Finding,
    Link,
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
    ALGORITHM,
    BUNDLE_FORMAT,
    merkle_proof,
    merkle_root,
    sign_bundle,
    signature_valid,
    statement,
)
from services.operations import access, keys
from services.operations.audit import all_links, order_chain

WITHHELD = (
    "it seals the patient reference of an order recorded before per-order salts, as a digest "
    "keyed by the COI that could be guessed; only its hash is shown"
)


def _order(session: Session, actor: Actor | None, coi: str) -> Order:
    if actor is not None:
        return access.order_by_coi(session, actor, coi)
    order = session.exec(select(Order).where(Order.coi == coi)).first()
    if order is None:
        raise NotFound(f"no order {coi}")
    return order


def _record(item: Link, *, may_see: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "position": item.position,
        "table": item.table,
        "prev_hash": item.prev_hash,
        "hash": item.hash,
    }
    identity = item.content.get("identity")
    opened = identity.get("order") if isinstance(identity, dict) else None
    if not may_see and isinstance(opened, dict) and opened.get("digest") is None:
        record["withheld"] = WITHHELD
    else:
        record["content"] = plain(item.content)
    return record


def bundle(
    session: Session, *, actor: Actor | None, coi: str, now: dt.datetime, trust: keys.Trust
) -> dict[str, Any]:
    """The order's evidence bundle, signed with ``trust.signer`` when there is one;
    ``actor=None``: the installation's operator."""
    order = _order(session, actor, coi)
    may_see = actor is None or access.may_see_patient_ref(actor, order)
    key = chain_key(order.id)
    links = order_chain(session, order)
    records = [_record(item, may_see=may_see) for item in links]
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
    if trust.signer is not None:
        used.add(trust.signer.key_id)
    sites = {site.id: site.code for site in session.exec(select(Site)).all()}
    summary: dict[str, Any] = {
        "coi": order.coi,
        "product": order.product,
        "collection_site": sites[order.collection_site_id],
        "manufacturing_site": sites[order.manufacturing_site_id],
        "treatment_site": sites[order.treatment_site_id],
    }
    if may_see:
        summary["patient_ref"] = order.patient_ref
        if order.patient_birth_date is not None:
            summary["patient_birth_date"] = order.patient_birth_date.isoformat()
        if order.patient_name is not None:
            summary["patient_name"] = order.patient_name
        if order.identity_salt is not None:
            summary["identity_salt"] = order.identity_salt
    body: dict[str, Any] = {
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
            # the keys configuration trusts, never signing_keys' word: a checkpoint signed by
            # a key only the database knows stays in the bundle, and fails its verification
            "public_keys": [
                {
                    "key_id": key_id,
                    "algorithm": ALGORITHM,
                    "public_key": base64.b64encode(trust.keys[key_id]).decode(),
                }
                for key_id in sorted(k for k in used if k in trust.keys)
            ]
        },
    }
    if trust.signer is not None:
        sign_bundle(body, trust.signer.private, trust.keys[trust.signer.key_id])
    return body


# a witness's copy of a checkpoint


def verify_witness(
    session: Session, witness: dict[str, Any], *, trust: keys.Trust
) -> Finding | None:
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
    public = trust.keys  # from configuration: a key only the database knows proves nothing
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
            return Finding(
                where, None, None, None, "its signature is not by a key the installation trusts"
            )
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
