"""Evidence anyone can check without our database: signed checkpoints and the evidence bundle.

- A **checkpoint** records every chain's length and head. Its heads are the leaves of a Merkle
  tree (RFC 6962 hashing: leaves and nodes hashed apart), and the installation signs, with its
  Ed25519 key, a statement of the checkpoint that names the tree's root. One order's bundle
  then carries only its own chain's leaf and the path to the root: the signature proves that
  chain's head without showing any other order's.
- The **bundle** of an order holds its chain's records (their hashed content), the signatures
  and QA reviews bound to them, the signed checkpoints that cover the chain with their proofs,
  and the installation's public keys. :func:`verify_bundle` checks it all and names the first
  record, signature, review or checkpoint that was changed, removed or reordered.

Pure: standard library and ``cryptography`` only, so a bundle verifies where nothing else of
vein2vein runs (``python -m services.bundle FILE``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.domain.audit import GENESIS, canonical, link

BUNDLE_FORMAT = "vein2vein-evidence/1"
STATEMENT_FORMAT = "vein2vein-checkpoint/1"
ALGORITHM = "Ed25519"


# the Merkle tree of a checkpoint's heads


def leaf(key: str, length: int, head: str) -> bytes:
    return hashlib.sha256(
        b"\x00" + canonical({"chain": key, "length": length, "head": head})
    ).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        parents = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])  # an odd node goes up as it is
        levels.append(parents)
    return levels


def _sorted_leaves(heads: Mapping[str, Sequence[Any]]) -> tuple[list[str], list[bytes]]:
    keys = sorted(heads)
    return keys, [leaf(k, int(heads[k][0]), str(heads[k][1])) for k in keys]


def merkle_root(heads: Mapping[str, Sequence[Any]]) -> str:
    """The root of the tree of ``heads`` (chain key -> [length, head]), hex."""
    _keys, leaves = _sorted_leaves(heads)
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    return _levels(leaves)[-1][0].hex()


def merkle_proof(heads: Mapping[str, Sequence[Any]], key: str) -> list[list[str]]:
    """The path from ``key``'s leaf to the root: [side, sibling hex] per level ("L": the
    sibling is on the left)."""
    keys, leaves = _sorted_leaves(heads)
    index = keys.index(key)
    proof = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(["L" if sibling < index else "R", level[sibling].hex()])
        index //= 2
    return proof


def root_from_proof(key: str, length: int, head: str, proof: Sequence[Sequence[str]]) -> str:
    current = leaf(key, length, head)
    for side, sibling in proof:
        other = bytes.fromhex(sibling)
        current = _node(other, current) if side == "L" else _node(current, other)
    return current.hex()


# the signed statement of a checkpoint


def statement(*, taken_at: str, records: int, root: str, prev_hash: str, digest: str) -> bytes:
    """What the installation signs for a checkpoint (``taken_at``: its canonical UTC text)."""
    return canonical(
        {
            "format": STATEMENT_FORMAT,
            "taken_at": taken_at,
            "records": records,
            "root": root,
            "prev_hash": prev_hash,
            "hash": digest,
        }
    )


def public_bytes(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """A key's name: the first 16 hex digits of the SHA-256 of its raw public bytes."""
    return hashlib.sha256(public).hexdigest()[:16]


def sign(private: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(private.sign(message)).decode()


def signature_valid(public: bytes, message: bytes, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def decode_key(text: str) -> bytes:
    raw = base64.b64decode(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


# verifying a bundle


@dataclass(frozen=True)
class BundleFinding:
    what: str  # record 7 of order:3, signature 2, checkpoint 5, the bundle
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


@dataclass(frozen=True)
class BundleReport:
    records: int
    signatures: int
    reviews: int
    checkpoints: int
    key_ids: list[str]
    finding: BundleFinding | None

    @property
    def ok(self) -> bool:
        return self.finding is None


def verify_bundle(bundle: Mapping[str, Any], *, trusted_keys: Sequence[bytes] = ()) -> BundleReport:
    """Check an evidence bundle on its own. ``trusted_keys``: public keys obtained another way
    (the installation's published key); when given, the bundle's own keys must be among them."""
    counts = {"records": 0, "signatures": 0, "reviews": 0, "checkpoints": 0}
    keys: dict[str, bytes] = {}

    def report(finding: BundleFinding | None) -> BundleReport:
        return BundleReport(
            counts["records"],
            counts["signatures"],
            counts["reviews"],
            counts["checkpoints"],
            sorted(keys),
            finding,
        )

    if bundle.get("format") != BUNDLE_FORMAT:
        return report(BundleFinding("the bundle", f"is not a {BUNDLE_FORMAT} file"))
    try:
        for item in bundle["installation"]["public_keys"]:
            raw = decode_key(item["public_key"])
            if key_id(raw) != item["key_id"]:
                return report(BundleFinding(f"key {item['key_id']}", "its id is not its key's"))
            keys[item["key_id"]] = raw
        chain = bundle["chain"]
        key = chain["key"]
        records = chain["records"]
    except (KeyError, TypeError, ValueError) as error:
        return report(BundleFinding("the bundle", f"is incomplete or malformed ({error})"))

    # the chain: positions 1..n, each linked to the one before and matching its content
    prev, by_hash = GENESIS, {}
    for position, record in enumerate(records, start=1):
        counts["records"] += 1
        where = f"record {position} of {key}"
        if record.get("position") != position:
            return report(
                BundleFinding(
                    where,
                    f"is at position {record.get('position')}: records were "
                    "removed, inserted or reordered",
                )
            )
        if record.get("prev_hash") != prev:
            return report(
                BundleFinding(
                    where,
                    "does not link to the record before it: a record was "
                    "removed, inserted or reordered",
                )
            )
        if link(record["prev_hash"], record["content"]) != record.get("hash"):
            return report(
                BundleFinding(where, "its content does not match its hash: it was edited")
            )
        prev = record["hash"]
        by_hash[record["hash"]] = position
    head = (len(records), prev)

    # signatures and reviews: bound to a record of the chain, and sealed
    for kind in ("signatures", "reviews"):
        for number, item in enumerate(bundle.get(kind, []), start=1):
            counts[kind] += 1
            where = (
                f"signature {number} ({item.get('content', {}).get('printed_name', '?')})"
                if kind == "signatures"
                else f"review {number}"
            )
            if item.get("record_hash") not in by_hash:
                return report(BundleFinding(where, "is bound to no record of this chain"))
            if link(item["record_hash"], item["content"]) != item.get("hash"):
                return report(BundleFinding(where, "its content does not match its hash: altered"))

    # checkpoints: signed by the installation, their root proving this chain's head then
    hashes = [r["hash"] for r in records]
    for checkpoint in bundle.get("checkpoints", []):
        counts["checkpoints"] += 1
        where = f"checkpoint {checkpoint.get('id')}"
        try:
            message = statement(
                taken_at=checkpoint["taken_at"],
                records=int(checkpoint["records"]),
                root=checkpoint["root"],
                prev_hash=checkpoint["prev_hash"],
                digest=checkpoint["hash"],
            )
            public = keys.get(checkpoint["key_id"])
            signed = public is not None and signature_valid(
                public, message, checkpoint["signature"]
            )
            length, seen = int(checkpoint["leaf"]["length"]), checkpoint["leaf"]["head"]
            proof = checkpoint["proof"]
        except (KeyError, TypeError, ValueError) as error:
            return report(BundleFinding(where, f"is incomplete ({error})"))
        if public is not None and trusted_keys and public not in trusted_keys:
            return report(
                BundleFinding(
                    where,
                    f"was signed with key {checkpoint['key_id']}, which is not the "
                    "installation's published key: the bundle was re-signed",
                )
            )
        if not signed:
            return report(
                BundleFinding(
                    where,
                    "its signature is not the installation's key's: it was re-signed or altered",
                )
            )
        if root_from_proof(key, length, seen, proof) != checkpoint["root"]:
            return report(BundleFinding(where, f"does not prove the head of {key}"))
        if length > len(hashes):
            return report(
                BundleFinding(
                    where,
                    f"saw {length} records of {key}; the bundle has only "
                    f"{len(hashes)}: records were removed",
                )
            )
        if length and hashes[length - 1] != seen:
            return report(
                BundleFinding(
                    f"record {length} of {key}",
                    f"differs from what {where} signed "
                    "for it: the chain was rewritten after the checkpoint",
                )
            )
    stated = bundle["chain"].get("head")
    if stated is not None and [head[0], head[1]] != list(stated):
        return report(BundleFinding("the bundle", "its chain does not end at the head it states"))
    return report(None)
