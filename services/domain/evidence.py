"""Evidence anyone can check without our database: signed checkpoints and the evidence bundle.

- A **checkpoint** records every chain's length and head. Its heads are the leaves of a Merkle
  tree (RFC 6962 hashing: leaves and nodes hashed apart), and the installation signs, with its
  Ed25519 key, a statement of the checkpoint that names the tree's root. One order's bundle
  then carries only its own chain's leaf and the path to the root: the signature proves that
  chain's head without showing any other order's.
- The **bundle** of an order holds its chain's records (their hashed content), the signatures
  and QA reviews bound to them, the signed checkpoints that cover the chain with their proofs,
  and the installation's public keys; the installation signs it as a whole when it exports it
  (:func:`sign_bundle`). ``services.domain.evidence_check.verify_bundle`` checks it all
  against keys the reader pinned, and names the first thing changed, removed or reordered.

Pure: standard library and ``cryptography`` only, so a bundle verifies where nothing else of
vein2vein runs (``python -m services.bundle FILE``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.domain.audit import canonical

BUNDLE_FORMAT = "vein2vein-evidence/2"  # signed as a whole by the installation at export
UNSIGNED_FORMATS = ("vein2vein-evidence/1",)  # exports from before: no signature over them
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


def fingerprint(public: bytes) -> str:
    """A key's whole SHA-256, in groups of four hex digits for a person to compare (its first
    four groups are its key id)."""
    digest = hashlib.sha256(public).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def sign(private: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(private.sign(message)).decode()


def _b64(text: object, size: int, what: str) -> bytes:
    """Strict base64 of exactly ``size`` bytes (no stray characters skipped, as b64decode
    does by default), or ValueError naming ``what``."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be base64 text, not {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not base64") from None
    if len(raw) != size:
        raise ValueError(f"{what} is {len(raw)} bytes, not {size}")
    if base64.b64encode(raw).decode() != text:  # one spelling per value: no padding games
        raise ValueError(f"{what} is not in canonical base64")
    return raw


def signature_valid(public: bytes, message: bytes, signature: object) -> bool:
    try:
        raw = _b64(signature, 64, "an Ed25519 signature")
        Ed25519PublicKey.from_public_bytes(public).verify(raw, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def decode_key(text: object) -> bytes:
    """An Ed25519 public key as we publish it (base64 of the raw 32 bytes); ValueError if it
    is anything else."""
    return _b64(text, 32, "an Ed25519 public key")


def parse_keys(text: str, *, source: str = "AUDIT_TRUSTED_KEYS") -> list[bytes]:
    """Trusted keys as configured: base64 keys separated by commas (spaces and empty entries
    ignored). ValueError naming the first that is not a key, and where it came from."""
    keys = []
    for number, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        try:
            keys.append(decode_key(item))
        except ValueError as error:
            raise ValueError(f"{source}: key {number} ({item[:12]}...): {error}") from None
    return keys


# the export's own signature, over the whole bundle

EXPORT_SIGNATURE = "export_signature"  # the bundle's one key its signature does not cover
EXPORT_CONTEXT = b"vein2vein-evidence-export\n"  # signed before the bundle: no other message


def export_message(bundle: Mapping[str, Any]) -> bytes:
    """What the export signature signs: the whole bundle but the signature block, in the
    canonical form the chain hashes use (sorted keys, no spaces, UTF-8)."""
    return EXPORT_CONTEXT + canonical({k: v for k, v in bundle.items() if k != EXPORT_SIGNATURE})


def sign_bundle(
    bundle: dict[str, Any], private: Ed25519PrivateKey, public: bytes
) -> dict[str, Any]:
    """The bundle with its export signature (every other key of it is signed)."""
    bundle[EXPORT_SIGNATURE] = {
        "algorithm": ALGORITHM,
        "key_id": key_id(public),
        "public_key": base64.b64encode(public).decode(),
        "signature": sign(private, export_message(bundle)),
    }
    return bundle
