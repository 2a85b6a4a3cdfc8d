"""Nothing in an export lets a reader recover a patient reference they may not see.

New orders seal ``HMAC(order's random salt, patient_ref)``; the salt never leaves the database
for a site that may not see the reference. A brute force of a short reference over a
manufacturing site's bundle, with every construction an attacker would try, finds nothing;
the same attack recovers the reference from the old COI-keyed construction (so the test can
fail), which is why a bundle for such a site withholds the old orders' sealing record.
Orders recorded before the salts keep their seal, and `audit verify` checks both."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import Order
from services.domain.audit import SALTED_DIGEST, identity_digest, patient_digest
from services.domain.evidence_check import verify_bundle
from services.operations import audit
from tests.integration.test_audit import _engine, _rows, _verify, tamper
from tests.integration.test_evidence import signed_checkpoint
from tests.relink import relink_statements
from tests.world import World

CANDIDATES = [f"PAT-{n:04d}" for n in range(10_000)]
SEPARATORS = (b"", b":", b"|", b"/", b"-", b"\n", b" ", b"\x00")
HASHES = ("sha256", "sha1", "md5", "sha512", "blake2b", "sha3_256")


def strings_in(value: Any) -> set[str]:
    """Every text in a bundle (keys too), lower-cased: where a digest could hide."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(str(key).lower() for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found.add(item.lower())
    return found


def public_values(bundle: dict[str, Any]) -> list[bytes]:
    """What an attacker holding the bundle could key or salt a digest with: the COI, every
    DIN, the product, the site codes, the chain's key, the order's id."""
    header = bundle["order"]
    values = {header["coi"], header["product"], bundle["chain"]["key"]}
    values |= {header[name] for name in ("collection_site", "manufacturing_site", "treatment_site")}
    for record in bundle["chain"]["records"]:
        content = record.get("content", {})
        identity = content.get("identity") or {}
        values |= {v for v in (identity.get("din"), identity.get("coi")) if v}
        values.add(str(content.get("order_id", "")))
    return [value.encode() for value in sorted(values) if value]


def guesses(candidate: bytes, keys: list[bytes]) -> Iterator[str]:
    for name in HASHES:
        yield hashlib.new(name, candidate).hexdigest()
    for key in keys:
        for digest in (
            hmac.new(key, candidate, hashlib.sha256).digest(),
            hmac.new(candidate, key, hashlib.sha256).digest(),
            hmac.new(key, candidate, hashlib.sha1).digest(),
        ):
            yield digest.hex()
            yield base64.b64encode(digest).decode().lower()
        for separator in SEPARATORS:
            yield hashlib.sha256(key + separator + candidate).hexdigest()
            yield hashlib.sha256(candidate + separator + key).hexdigest()


def brute_force(bundle: dict[str, Any]) -> str | None:
    """The patient reference, if any construction of any PAT-0000..PAT-9999 appears in it."""
    texts = strings_in(bundle)
    keys = public_values(bundle)
    for candidate in CANDIDATES:
        if candidate.lower() in texts:
            return candidate
        raw = candidate.encode()
        if any(guess in texts for guess in guesses(raw, keys)):
            return candidate
    return None


def factory(world: World) -> Any:
    return world.app.extensions["vein2vein"].db.session_factory


def order_row(world: World, coi: str) -> Order:
    with UnitOfWork(factory(world)) as uow:
        order = uow.session.exec(select(Order).where(Order.coi == coi)).one()
        uow.session.expunge(order)
        return order


def as_recorded_before_salts(world: World, coi: str) -> None:
    """Make an order as migration 0007 left the orders of its day: no salt, and an opening
    record that seals the COI-keyed digest and names no construction (its chain hashed again
    after it, as it was written then)."""
    order = order_row(world, coi)
    with UnitOfWork(factory(world)) as uow:
        links = audit.order_chain(uow.session, order)
    opening = links[0]
    identity = dict(opening.content["identity"])
    sealed = dict(identity["order"])
    del sealed["digest"]
    sealed["patient"] = patient_digest(coi, order.patient_ref)
    identity["order"] = sealed
    sqlite = _engine(world).dialect.name == "sqlite"
    statements = ["DROP TRIGGER IF EXISTS orders_identity_salt"] if sqlite else []
    text = json.dumps(identity).replace("'", "''")
    statements += [
        f"UPDATE custody_events SET identity = '{text}' WHERE id = {opening.id}",
        f"UPDATE orders SET identity_salt = NULL WHERE id = {order.id}",
    ]
    tamper(world, *statements)
    with UnitOfWork(factory(world)) as uow:
        links = audit.order_chain(uow.session, order)
        fixes, _head = relink_statements(uow.session, f"order:{order.id}", links)
    tamper(world, *fixes)


def published_key(world: World) -> bytes:
    return base64.b64decode(world.get("op", "/api/v1/keys").json["keys"][0]["public_key"])


def test_a_new_order_seals_a_salted_digest_and_only_its_own_sites_get_the_salt(
    world: World,
) -> None:
    bag = world.bag_at("receive", "PAT-4711")
    signed_checkpoint(world)
    order = order_row(world, bag["coi"])
    assert order.identity_salt is not None
    assert len(bytes.fromhex(order.identity_salt)) == 32
    care = world.get("care", f"/api/v1/orders/{bag['coi']}/evidence").json
    opened = care["chain"]["records"][0]["content"]["identity"]["order"]
    assert opened["digest"] == SALTED_DIGEST
    assert opened["patient"] == identity_digest(order.identity_salt, "PAT-4711")
    assert care["order"]["patient_ref"] == "PAT-4711"
    assert care["order"]["identity_salt"] == order.identity_salt
    report = verify_bundle(care, trusted_keys=[published_key(world)])
    assert report.ok, report
    assert "the patient reference is the one record 1 sealed" in report.notes
    for who in ("op", "courier"):  # a manufacturing site, the courier who carried the bag
        response = world.get(who, f"/api/v1/orders/{bag['coi']}/evidence")
        assert response.status_code == 200, (who, response.json)
        text = response.get_data(as_text=True)
        assert order.identity_salt not in text
        assert "PAT-4711" not in text
        assert "identity_salt" not in text
        report = verify_bundle(response.json, trusted_keys=[published_key(world)])
        assert report.ok, (who, report)  # and it still verifies


def test_a_brute_force_of_the_reference_fails_on_a_manufacturing_sites_bundle(
    world: World,
) -> None:
    bag = world.bag_at("receive", "PAT-4711")
    signed_checkpoint(world)
    bundle = world.get("op", f"/api/v1/orders/{bag['coi']}/evidence").json
    assert bundle["chain"]["records"][0]["content"]["identity"]["order"]["patient"]
    assert brute_force(bundle) is None

    # the old construction, over the same kind of bundle, gives the reference away
    old = world.bag_at("receive", "PAT-0815")
    as_recorded_before_salts(world, old["coi"])
    assert _verify(world).ok  # old and new seals verify side by side
    signed_checkpoint(world)
    seen_as_before = world.get("care", f"/api/v1/orders/{old['coi']}/evidence").json
    for name in ("patient_ref", "identity_salt"):  # the header as a manufacturing site's
        seen_as_before["order"].pop(name, None)
    assert brute_force(seen_as_before) == "PAT-0815"

    # so a manufacturing site's bundle of such an order withholds its sealing record, and
    # still verifies
    withheld = world.get("op", f"/api/v1/orders/{old['coi']}/evidence").json
    assert [r for r in withheld["chain"]["records"] if "withheld" in r]
    assert brute_force(withheld) is None
    report = verify_bundle(withheld, trusted_keys=[published_key(world)])
    assert report.ok, report
    assert any("withheld" in note for note in report.notes)
    # ... while the care team's carries it, and checks the reference against the old seal
    care = world.get("care", f"/api/v1/orders/{old['coi']}/evidence").json
    assert not [r for r in care["chain"]["records"] if "withheld" in r]
    assert "identity_salt" not in care["order"]
    report = verify_bundle(care, trusted_keys=[published_key(world)])
    assert report.ok, report
    assert any("patient reference is the one record" in note for note in report.notes)
    care["order"]["patient_ref"] = "PAT-0816"
    assert "patient reference" in str(verify_bundle(care).finding)


@pytest.mark.parametrize("construction", ["salted", "before salts"])
def test_verify_finds_a_rewritten_reference_under_either_construction(
    world: World, construction: str
) -> None:
    bag = world.bag_at("collected", "PAT-1234")
    if construction == "before salts":
        as_recorded_before_salts(world, bag["coi"])
    assert _verify(world).ok
    order = order_row(world, bag["coi"])
    sqlite = _engine(world).dialect.name == "sqlite"
    tamper(
        world,
        *(["DROP TRIGGER IF EXISTS orders_identity"] if sqlite else []),
        f"UPDATE orders SET patient_ref = 'PAT-4321' WHERE id = {order.id}",
    )
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id) == ("orders", order.id)
    assert "patient reference" in finding.problem
    assert "PAT-4321" not in str(finding)


@pytest.mark.parametrize("salt", ["NULL", "'" + "ab" * 32 + "'", "'not hex'"])
def test_verify_finds_a_salt_rewritten_or_removed(world: World, salt: str) -> None:
    bag = world.bag_at("collected", "PAT-1234")
    order = order_row(world, bag["coi"])
    sqlite = _engine(world).dialect.name == "sqlite"
    tamper(
        world,
        *(["DROP TRIGGER IF EXISTS orders_identity_salt"] if sqlite else []),
        f"UPDATE orders SET identity_salt = {salt} WHERE id = {order.id}",
    )
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id) == ("orders", order.id)


def test_the_database_refuses_to_change_a_salt(world: World) -> None:
    bag = world.bag_at("collected", "PAT-1234")
    order = order_row(world, bag["coi"])
    for value in ("NULL", "'" + "cd" * 32 + "'"):
        with pytest.raises(DBAPIError, match="identity"), _engine(world).begin() as connection:
            connection.exec_driver_sql(
                f"UPDATE orders SET identity_salt = {value} WHERE id = {order.id}"
            )
    assert _rows(world, f"SELECT identity_salt FROM orders WHERE id = {order.id}") == [
        (order.identity_salt,)
    ]
