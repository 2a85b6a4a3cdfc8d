"""Verifying an evidence bundle with no database, against keys the reader pinned.

A bundle is **verified** only when it holds together (every record links to the one before it
and matches its hash; every signature and review is bound to a record and sealed; every
checkpoint is signed and proves the chain's head then; the header says what the chain sealed)
*and* the installation's export signature over the whole of it verifies with a key the reader
trusts from elsewhere (``--public-key``, ``AUDIT_TRUSTED_KEYS``). A bundle that holds together
but is unsigned, or signed by a key nobody pinned, is **unproven**: whoever forged it could
have made it hold together. Anything else is **broken**, with the first thing wrong named.

Any input at all ends in one of the three: not an object, wrong types anywhere, missing keys,
huge numbers, deep nesting, keys that are not base64, text that is not Unicode. Nothing here
raises for what a bundle holds.

Pure: standard library and ``cryptography`` only (``python -m services.bundle FILE``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from services.domain.audit import GENESIS, SALTED_DIGEST, link, sealed_patient_digest
from services.domain.evidence import (
    ALGORITHM,
    BUNDLE_FORMAT,
    EXPORT_SIGNATURE,
    UNSIGNED_FORMATS,
    decode_key,
    export_message,
    fingerprint,
    key_id,
    root_from_proof,
    signature_valid,
    statement,
)

VERIFIED, BROKEN, UNPROVEN = "verified", "broken", "unproven"
MAX_DEPTH = 48  # the bundle's own nesting is 6; a record's content a few levels more
MAX_INTEGER = 2**63 - 1  # what any number of ours fits in (positions, counts, ids)
MAX_PROOF = 64  # a Merkle path longer than this would cover more chains than exist
TABLES = ("custody_events", "refused_scans")
SITES = ("collection_site", "manufacturing_site", "treatment_site")
EXPORT_KEYS = frozenset({"algorithm", "key_id", "public_key", "signature"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHAIN = re.compile(r"order:([1-9][0-9]{0,17})")


@dataclass(frozen=True)
class BundleFinding:
    what: str  # record 7 of order:3, signature 2, checkpoint 5, the header, the bundle
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
    unproven: str | None = None  # why its origin is not shown (when nothing is broken)
    signed_by: str | None = None  # the trusted key that signed the export
    notes: tuple[str, ...] = ()  # what was checked, and what could not be for this reader

    @property
    def ok(self) -> bool:
        return self.finding is None and self.unproven is None

    @property
    def status(self) -> str:
        if self.finding is not None:
            return BROKEN
        return UNPROVEN if self.unproven is not None else VERIFIED


class _Stop(Exception):
    def __init__(self, what: str, detail: str) -> None:
        super().__init__(what, detail)
        self.finding = BundleFinding(what, detail)


def _stop(what: str, detail: str) -> NoReturn:
    raise _Stop(what, detail)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "text", bool: "true or false"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return names[bool]
    if isinstance(value, (int, float)):
        return "a number"
    return names.get(type(value), f"a {type(value).__name__}")


def _json_safe(bundle: object) -> None:
    """Everything in the bundle is a value JSON carries and the canonical form can write:
    text keys, finite numbers that fit, Unicode text, bounded nesting. Walked without
    recursion, so depth alone cannot exhaust the stack."""
    stack: list[tuple[object, int, str]] = [(bundle, 0, "the bundle")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            _stop(where, f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    _stop(where, f"has a key that is {_kind(key)}, not text")
                _text(key, where)
                stack.append((item, depth + 1, where if depth else f"its {key!r}"))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, where) for item in value)
        elif isinstance(value, str):
            _text(value, where)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_INTEGER:
                _stop(where, f"holds a number too large for any field ({value.bit_length()} bits)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                _stop(where, f"holds {value}, which is not a JSON number")
        else:
            _stop(where, f"holds {_kind(value)}, which JSON cannot carry")


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _stop(where, "holds text that is not valid Unicode (a lone surrogate)")


# reading a field of the right kind, or naming what is wrong with it


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _stop(where, f"is {_kind(value)}, not an object")
    return value


def _get(value: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in value:
        _stop(where, f"has no {key!r}")
    return value[key]


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        _stop(where, f"is {_kind(value)}, not an array")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        _stop(where, f"is {_kind(value)}, not text")
    return value


def _integer(value: object, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _stop(where, f"is {_kind(value)}, not a whole number")
    if value < minimum:
        _stop(where, f"is {value}, below {minimum}")
    return value


def _hex64(value: object, where: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        _stop(where, "is not a SHA-256 hash (64 lower-case hex digits)")
    return value


def _field(record: Mapping[str, Any], key: str, where: str) -> tuple[Any, str]:
    return _get(record, key, where), f"{where}: its {key!r}"


@dataclass
class _Check:
    trusted: list[bytes]
    records: int = 0
    signatures: int = 0
    reviews: int = 0
    checkpoints: int = 0
    listed: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unproven: str | None = None
    signed_by: str | None = None

    def run(self, bundle: object) -> None:
        if not isinstance(bundle, dict):
            _stop("the bundle", f"is {_kind(bundle)}, not a JSON object")
        _json_safe(bundle)
        form = bundle.get("format")
        if form != BUNDLE_FORMAT and form not in UNSIGNED_FORMATS:
            _stop("the bundle", f"is not a vein2vein evidence bundle (format {form!r})")
        self._keys(bundle)
        header = self._header_shape(bundle)
        key, hashes, opened = self._chain(bundle, header["coi"])
        self._header(header, opened)
        for kind in ("signatures", "reviews"):
            self._bound(bundle, kind, set(hashes))
        self._checkpoints(bundle, key, hashes)
        self._export_signature(bundle, form)

    # the installation's keys (covered, like all the rest, by the export signature)

    def _keys(self, bundle: Mapping[str, Any]) -> None:
        installation = _object(_get(bundle, "installation", "the bundle"), "its installation")
        items = _list(_get(installation, "public_keys", "its installation"), "its public_keys")
        for number, item in enumerate(items, start=1):
            where = f"public key {number}"
            entry = _object(item, where)
            named = _string(_get(entry, "key_id", where), f"{where}: its key_id")
            if entry.get("algorithm") != ALGORITHM:
                _stop(where, f"is not an {ALGORITHM} key ({entry.get('algorithm')!r})")
            try:
                raw = decode_key(_get(entry, "public_key", where))
            except ValueError as error:
                _stop(where, str(error))
            if key_id(raw) != named:
                _stop(where, f"its id {named!r} is not its key's ({key_id(raw)})")
            self.listed[named] = raw

    # the chain, record by record

    def _chain(
        self, bundle: Mapping[str, Any], coi: str
    ) -> tuple[str, list[str], tuple[int, dict[str, Any]] | None]:
        chain = _object(_get(bundle, "chain", "the bundle"), "its chain")
        key = _string(_get(chain, "key", "the chain"), "the chain's key")
        matched = _CHAIN.fullmatch(key)
        if matched is None:
            _stop("the chain", f"its key {key[:40]!r} is not order:<number>")
        order_id = int(matched.group(1))
        records = _list(_get(chain, "records", "the chain"), "the chain's records")
        prev, hashes, withheld = GENESIS, [], 0
        opened: tuple[int, dict[str, Any]] | None = None
        for position, item in enumerate(records, start=1):
            self.records += 1
            where = f"record {position} of {key}"
            record = _object(item, where)
            stated = _integer(*_field(record, "position", where), minimum=1)
            if stated != position:
                _stop(
                    where, f"is at position {stated}: records were removed, inserted or reordered"
                )
            if _hex64(*_field(record, "prev_hash", where)) != prev:
                _stop(
                    where,
                    "does not link to the record before it: a record was removed, inserted "
                    "or reordered",
                )
            digest = _hex64(*_field(record, "hash", where))
            table = _get(record, "table", where)
            if table not in TABLES:
                _stop(where, f"its table is not one of {', '.join(TABLES)}")
            if "content" in record:
                content = _object(record["content"], f"{where}: its content")
                if link(prev, content) != digest:
                    _stop(where, "its content does not match its hash: it was edited")
                # what the hash covers says where the record belongs
                for name, expected in (
                    ("table", table),
                    ("order_id", order_id),
                    ("chain_position", position),
                ):
                    if content.get(name) != expected or isinstance(content.get(name), bool):
                        _stop(
                            where,
                            f"its sealed {name} is {content.get(name)!r}, not {expected!r}: it "
                            "belongs elsewhere",
                        )
                identity = content.get("identity")
                sealed_coi = identity.get("coi") if isinstance(identity, dict) else None
                if sealed_coi is not None and sealed_coi != coi:
                    _stop(
                        "the header",
                        f"names COI {coi!r}, but record {position} sealed {sealed_coi!r}",
                    )
                opened = opened or self._opening(position, content)
            elif "withheld" in record:
                reason = _string(record["withheld"], f"{where}: why it is withheld")
                withheld += 1
                if withheld > 1:
                    _stop(where, "is withheld too: an export withholds one record at most")
                self.notes.append(
                    f"record {position}'s content is withheld from this reader: {reason}"
                )
            else:
                _stop(where, "has neither content nor a reason it is withheld")
            prev = digest
            hashes.append(digest)
        head = _list(_get(chain, "head", "the chain"), "the chain's head")
        ends = [len(records), prev if records else None]
        if head != ends or isinstance(head[0], bool):
            _stop(
                "the chain",
                f"ends at record {len(records)}, not at the head it states ({head[:2]!r}): "
                "records were removed or added at its end",
            )
        if opened is None and not withheld:
            _stop(
                "the chain",
                "no record of it seals the order's identity: its enrolment record is missing",
            )
        return key, hashes, opened

    def _opening(
        self, position: int, content: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]] | None:
        """The record that seals the order's identity (its enrolment), if this is it."""
        identity = content.get("identity")
        if not isinstance(identity, dict) or identity.get("order") is None:
            return None
        return position, _object(identity["order"], f"record {position}: its sealed order")

    # the header against what the chain sealed

    def _header_shape(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        header = _object(_get(bundle, "order", "the bundle"), "the header")
        for name in ("coi", "product", *SITES):
            _string(_get(header, name, "the header"), f"the header's {name}")
        for name in ("patient_ref", "identity_salt"):
            if name in header:
                _string(header[name], f"the header's {name}")
        return header

    def _header(self, header: Mapping[str, Any], opened: tuple[int, dict[str, Any]] | None) -> None:
        if opened is None:
            self.notes.append(
                "the header's product, sites and patient reference are not checked: the record "
                "that seals them is withheld from this reader"
            )
            return
        position, order = opened
        where = f"record {position}"
        if order.get("product") != header["product"]:
            _stop(
                "the header",
                f"names product {header['product']!r}, but {where} sealed {order.get('product')!r}",
            )
        sealed = order.get("sites")
        if not isinstance(sealed, list) or len(sealed) != len(SITES):
            _stop(where, "its sealed sites are not the order's three")
        for name, site in zip(SITES, sealed, strict=True):
            code = site[0] if isinstance(site, list) and site else None
            if code != header[name]:
                _stop(
                    "the header",
                    f"names {name.replace('_', ' ')} {header[name]!r}, but {where} sealed {code!r}",
                )
        self._patient(header, order, where)
        self.notes.append(f"the header's COI, product and sites are what {where} sealed")

    def _patient(self, header: Mapping[str, Any], order: Mapping[str, Any], where: str) -> None:
        if "patient_ref" not in header:
            self.notes.append("the patient reference is not in this export (not for this reader)")
            return
        construction = order.get("digest")
        if construction not in (None, SALTED_DIGEST):
            _stop(
                where,
                "seals the patient by a construction this verifier does not know "
                f"({construction!r})",
            )
        salt = header.get("identity_salt")
        if construction == SALTED_DIGEST and salt is None:
            _stop(
                "the header",
                "carries a patient reference but not the identity salt that checks it "
                f"against {where}",
            )
        expected = sealed_patient_digest(
            order, coi=header["coi"], patient_ref=header["patient_ref"], salt=salt
        )
        if expected is None or expected != order.get("patient"):
            _stop("the header", f"its patient reference is not the one {where} sealed")
        self.notes.append(f"the patient reference is the one {where} sealed")
        # the second identifier and a name, where the order recorded them, sealed the same way
        for key, sealed_key, what in (
            ("patient_birth_date", "birth_date", "date of birth"),
            ("patient_name", "name", "patient's name"),
        ):
            value, sealed = header.get(key), order.get(sealed_key)
            if value is None and sealed is None:
                continue
            if not isinstance(value, str) or sealed is None:
                _stop("the header", f"its {what} is not the one {where} sealed")
            if sealed_patient_digest(order, coi=header["coi"], patient_ref=value, salt=salt) != (
                sealed
            ):
                _stop("the header", f"its {what} is not the one {where} sealed")
            self.notes.append(f"the {what} is the one {where} sealed")

    # signatures and reviews: each bound to a record of this chain, and sealed

    def _bound(self, bundle: Mapping[str, Any], kind: str, hashes: set[str]) -> None:
        items = _list(_get(bundle, kind, "the bundle"), f"its {kind}")
        for number, item in enumerate(items, start=1):
            setattr(self, kind, getattr(self, kind) + 1)
            where = f"{kind[:-1]} {number}"
            entry = _object(item, where)
            content = _object(_get(entry, "content", where), f"{where}: its content")
            name = content.get("printed_name")
            if kind == "signatures" and isinstance(name, str):
                where = f"{where} ({name[:60]})"
            bound = _hex64(*_field(entry, "record_hash", where))
            digest = _hex64(*_field(entry, "hash", where))
            if bound not in hashes:
                _stop(where, "is bound to no record of this chain")
            if link(bound, content) != digest:
                _stop(where, "its content does not match its hash: it was altered")

    # checkpoints: signed, and proving this chain's head when they were taken

    def _checkpoints(self, bundle: Mapping[str, Any], key: str, hashes: list[str]) -> None:
        items = _list(_get(bundle, "checkpoints", "the bundle"), "its checkpoints")
        for number, item in enumerate(items, start=1):
            self.checkpoints += 1
            entry = _object(item, f"checkpoint {number}")
            ident = entry.get("id")
            where = f"checkpoint {ident}" if isinstance(ident, int) else f"checkpoint {number}"
            taken_at = _string(*_field(entry, "taken_at", where))
            records = _integer(*_field(entry, "records", where))
            root = _hex64(*_field(entry, "root", where))
            prev_hash = _hex64(*_field(entry, "prev_hash", where))
            digest = _hex64(*_field(entry, "hash", where))
            signer = _string(*_field(entry, "key_id", where))
            signature = _get(entry, "signature", where)
            leaf = _object(_get(entry, "leaf", where), f"{where}: its leaf")
            length = _integer(*_field(leaf, "length", where), minimum=1)
            seen = _hex64(*_field(leaf, "head", where))
            proof = _list(_get(entry, "proof", where), f"{where}: its proof")
            if len(proof) > MAX_PROOF:
                _stop(
                    where, f"its proof has {len(proof)} steps; a real one has at most {MAX_PROOF}"
                )
            for step in proof:
                if (
                    not isinstance(step, list)
                    or len(step) != 2
                    or step[0] not in ("L", "R")
                    or not isinstance(step[1], str)
                    or not _HEX64.fullmatch(step[1])
                ):
                    _stop(where, 'a step of its proof is not ["L" or "R", a hash]')
            public = self.listed.get(signer)
            if public is None:
                _stop(
                    where,
                    f"was signed with key {signer[:40]!r}, which the bundle does not list among "
                    "the installation's keys",
                )
            message = statement(
                taken_at=taken_at, records=records, root=root, prev_hash=prev_hash, digest=digest
            )
            if not signature_valid(public, message, signature):
                _stop(where, f"its signature is not key {signer}'s: it was re-signed or altered")
            if root_from_proof(key, length, seen, proof) != root:
                _stop(where, f"does not prove the head of {key}")
            if length > len(hashes):
                _stop(
                    where,
                    f"saw {length} records of {key}; the bundle has only {len(hashes)}: records "
                    "were removed",
                )
            if hashes[length - 1] != seen:
                _stop(
                    f"record {length} of {key}",
                    f"differs from what {where} signed for it: the chain was rewritten after the "
                    "checkpoint",
                )

    # the export's signature over all of it, by a key the reader trusts

    def _export_signature(self, bundle: Mapping[str, Any], form: object) -> None:
        if form in UNSIGNED_FORMATS:
            self.unproven = f"a {form} bundle carries no export signature: export it again"
            return
        block = bundle.get(EXPORT_SIGNATURE)
        if block is None:
            self.unproven = (
                "the bundle carries no export signature, so nothing shows where it comes from "
                "(an installation with no signing key exports unsigned bundles)"
            )
            return
        where = "the export signature"
        entry = _object(block, where)
        if set(entry) != EXPORT_KEYS:  # nothing rides along that the signature does not cover
            extra = [key[:40] for key in sorted(set(entry) - EXPORT_KEYS)[:5]]
            missing = sorted(EXPORT_KEYS - set(entry))
            _stop(where, f"has keys it should not ({extra}) or lacks some ({missing})")
        if entry.get("algorithm") != ALGORITHM:
            _stop(where, f"is not {ALGORITHM} ({entry.get('algorithm')!r})")
        named = _string(*_field(entry, "key_id", where))
        try:
            public = decode_key(_get(entry, "public_key", where))
        except ValueError as error:
            _stop(where, f"its public_key: {error}")
        if key_id(public) != named:
            _stop(where, f"its key id {named[:40]!r} is not its key's ({key_id(public)})")
        if not signature_valid(public, export_message(bundle), _get(entry, "signature", where)):
            _stop(
                where,
                f"does not verify with key {named}: the bundle was changed after it was exported",
            )
        if public in self.trusted:
            self.signed_by = named
            return
        about = f"key {named} (SHA-256 {fingerprint(public)})"
        if not self.trusted:
            self.unproven = (
                f"no trusted key was given: the bundle is signed by {about}, which anyone could "
                "have made; pin the installation's published key (--public-key, or "
                "AUDIT_TRUSTED_KEYS) to prove where it comes from"
            )
        else:
            pinned = ", ".join(key_id(raw) for raw in self.trusted)
            self.unproven = (
                f"it is signed by {about}, which is not a trusted key ({pinned}): it comes from "
                "another installation, or was forged and signed again"
            )


def verify_bundle(bundle: object, *, trusted_keys: Iterable[bytes] = ()) -> BundleReport:
    """Check a bundle (as ``json.loads`` gives it, or anything else) against ``trusted_keys``:
    raw Ed25519 public keys the reader obtained another way than from the bundle."""
    check = _Check(trusted=[bytes(raw) for raw in trusted_keys])
    finding: BundleFinding | None = None
    try:
        check.run(bundle)
    except _Stop as stop:
        finding = stop.finding
    return BundleReport(
        records=check.records,
        signatures=check.signatures,
        reviews=check.reviews,
        checkpoints=check.checkpoints,
        key_ids=sorted(check.listed),
        finding=finding,
        unproven=None if finding else check.unproven,
        signed_by=None if finding else check.signed_by,
        notes=tuple(check.notes),
    )
