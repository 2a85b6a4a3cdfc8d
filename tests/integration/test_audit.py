"""The tamper-evident record: every kind of tampering is refused by the database or found by
`verify` at the exact record."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.exc import DBAPIError

from services.db import UnitOfWork
from services.domain.audit import UNATTRIBUTED, canonical, link
from services.operations import admin, audit, keys, signing
from tests.integration.test_cli import VEIN2VEIN, cli_env  # noqa: F401 - fixture
from tests.integration.test_condition import MINUTE, csv_file, now, shipped, upload
from tests.world import PASSWORD, World

APPEND_ONLY = (
    "custody_events",
    "refused_scans",
    "audit_checkpoints",
    "signatures",
    "label_prints",
    "reviews",
    "admin_changes",
    "sla_policies",
)


def _engine(world: World) -> sa.Engine:
    return world.app.extensions["vein2vein"].db.engine


def _verify(world: World) -> audit.Report:
    """A verify, and the same verify split in three parts by order id (as `audit verify
    --jobs 3` runs it): both must name the same first thing wrong."""
    factory = world.app.extensions["vein2vein"].db.session_factory
    settings = world.app.extensions["vein2vein"].settings
    trust = keys.installation_trust(  # as `audit verify` reads the settings
        key_path=settings.signing_key_path, configured=settings.trusted_public_keys
    )
    with UnitOfWork(factory) as uow:
        single = audit.verify(uow.session, trust=trust)
    with UnitOfWork(factory) as uow:
        heads = audit.chain_heads(uow.session)
        passes = [audit.verify_chains(uow.session, part=k, parts=3) for k in range(3)]
        split = audit.conclude(uow.session, passes, heads=heads, trust=trust)
    assert split.finding == single.finding
    if single.finding is None:
        assert (split.records, split.chains) == (single.records, single.chains)
    return single


def _checkpoint(world: World) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        audit.checkpoint(uow.session, now=dt.datetime.now(dt.UTC))
        uow.commit()


def tamper(world: World, *statements: str) -> None:
    """What a superuser could do behind the application's back: the triggers off, then SQL."""
    engine = _engine(world)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            for table in APPEND_ONLY:
                for verb in ("update", "delete"):
                    connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        for statement in statements:
            connection.exec_driver_sql(statement)


def _rows(world: World, sql: str) -> list[Any]:
    with _engine(world).connect() as connection:
        return list(connection.exec_driver_sql(sql))


def an_unattributed_refusal(world: World) -> None:
    """A refusal as one was kept before each site had a chain of its own: no order, no chain
    site, in the unattributed chain."""
    from services.db.models import RefusedScan, Site
    from services.operations.record import append_refusal

    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        actor = admin.actor_by_email(uow.session, "op@example.org")
        refusal = RefusedScan(
            action="receive",
            barcode="=W000099999999800",
            site_code="MFG-1",
            site_id=actor.site_id,
            actor_id=actor.user_id,
            code="not_found",
            detail="no bag W0000 99 999998 you can see",
            recorded_at=dt.datetime.now(dt.UTC),
        )
        site = uow.session.get(Site, actor.site_id)
        append_refusal(uow.session, refusal, coi=None, unit=None, actor=actor, site=site)
        uow.commit()


def a_record(world: World) -> dict[str, Any]:
    """Two orders: one bag through the leg with a refused scan in its chain, one collected."""
    bag = world.bag_at("receive", "PAT-AUDIT")
    refused = world.scan("courier", bag["barcode"], "pickup", "MFG-2")
    assert refused.status_code in (403, 404, 409, 422)
    wrong = world.scan("op", bag["barcode"], "verify_label", "MFG-1")
    assert wrong.status_code == 409
    other = world.bag_at("collected", "PAT-OTHER")
    (order_id,) = _rows(world, f"SELECT id FROM orders WHERE coi = '{bag['coi']}'")[0]
    return {"bag": bag, "other": other, "order_id": order_id}


def test_the_record_verifies_and_refusals_are_in_the_chain(world: World) -> None:
    made = a_record(world)
    report = _verify(world)
    assert report.ok, report.finding
    assert report.chains >= 2
    audited = world.get("care", f"/api/v1/orders/{made['bag']['coi']}/audit").json
    assert audited["verified"] is True
    kinds = [r["record"] for r in audited["records"]]
    assert "refused_scan" in kinds
    assert kinds[0] == "custody_event"
    assert [r["position"] for r in audited["records"]] == list(range(1, len(kinds) + 1))
    for before, after in zip(audited["records"], audited["records"][1:], strict=False):
        assert after["prev_hash"] == before["hash"]


@pytest.mark.postgres
@pytest.mark.parametrize("table", APPEND_ONLY)
def test_postgresql_refuses_update_delete_and_truncate(pg_app: Any, table: str) -> None:
    world = World.build(pg_app)
    a_record(world)
    _checkpoint(world)
    has_rows = bool(_rows(world, f"SELECT 1 FROM {table} LIMIT 1"))
    row_statements = [f"UPDATE {table} SET id = id", f"DELETE FROM {table}"] if has_rows else []
    for statement in [*row_statements, f"TRUNCATE {table} CASCADE"]:
        with pytest.raises(DBAPIError, match="append-only"), _engine(world).begin() as connection:
            connection.exec_driver_sql(statement)


def test_sqlite_refuses_update_and_delete(world: World) -> None:
    if _engine(world).dialect.name != "sqlite":
        return  # the PostgreSQL case above
    a_record(world)
    for statement in ("UPDATE custody_events SET site_id = site_id", "DELETE FROM refused_scans"):
        with pytest.raises(DBAPIError, match="append-only"), _engine(world).begin() as connection:
            connection.exec_driver_sql(statement)


def _event(world: World, order_id: int, position: int) -> int:
    return _rows(
        world,
        f"SELECT id FROM custody_events WHERE order_id = {order_id} "
        f"AND chain_position = {position}",
    )[0][0]


def test_an_edited_field_is_found_at_its_record(world: World) -> None:
    made = a_record(world)
    target = _event(world, made["order_id"], 3)
    tamper(world, f"UPDATE custody_events SET review_reason = 'looks fine' WHERE id = {target}")
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id, finding.position) == ("custody_events", target, 3)
    assert "edited" in finding.problem


def test_an_edited_refusal_is_found(world: World) -> None:
    made = a_record(world)
    (refusal,) = _rows(
        world, f"SELECT id FROM refused_scans WHERE order_id = {made['order_id']} LIMIT 1"
    )[0:1]
    tamper(world, f"UPDATE refused_scans SET detail = 'nothing happened' WHERE id = {refusal[0]}")
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id) == ("refused_scans", refusal[0])


def test_a_deleted_row_is_found_where_it_was(world: World) -> None:
    made = a_record(world)
    target = _event(world, made["order_id"], 2)
    tamper(world, f"DELETE FROM custody_events WHERE id = {target}")
    finding = _verify(world).finding
    assert finding is not None
    assert finding.chain == f"order:{made['order_id']}"
    assert finding.position == 2
    assert "missing" in finding.problem


def test_a_deleted_tail_is_found_by_the_head(world: World) -> None:
    made = a_record(world)
    (last,) = _rows(
        world, f"SELECT max(chain_position) FROM custody_events WHERE order_id = {made['order_id']}"
    )[0]
    tamper(
        world,
        # the receipt's signature, given in its act, goes with it
        "DELETE FROM signatures WHERE event_id IN (SELECT id FROM custody_events WHERE "
        f"order_id = {made['order_id']} AND chain_position >= {last})",
        *(
            f"DELETE FROM {table} WHERE order_id = {made['order_id']} AND chain_position >= {last}"
            for table in ("refused_scans", "custody_events")
        ),
    )
    finding = _verify(world).finding
    assert finding is not None
    assert finding.chain == f"order:{made['order_id']}"
    assert "deleted" in finding.problem


def test_a_tail_deleted_with_its_head_rewritten_is_found_by_the_checkpoint(world: World) -> None:
    made = a_record(world)
    _checkpoint(world)
    key = f"order:{made['order_id']}"
    prev_hash, position = _rows(
        world,
        "SELECT prev_hash, chain_position FROM custody_events WHERE order_id = "
        f"{made['order_id']} ORDER BY chain_position DESC LIMIT 1",
    )[0]
    tamper(
        world,
        "DELETE FROM signatures WHERE event_id IN (SELECT id FROM custody_events WHERE "
        f"order_id = {made['order_id']} AND chain_position >= {position})",
        *(
            f"DELETE FROM {table} WHERE order_id = {made['order_id']} "
            f"AND chain_position >= {position}"
            for table in ("refused_scans", "custody_events")
        ),
        f"UPDATE chain_heads SET length = {position - 1}, head = '{prev_hash}' WHERE key = '{key}'",
    )
    finding = _verify(world).finding
    assert finding is not None
    assert finding.chain == key
    assert "checkpoint" in finding.problem


def test_a_whole_order_deleted_is_found_by_the_checkpoint(world: World) -> None:
    made = a_record(world)
    _checkpoint(world)
    order = made["order_id"]
    tamper(
        world,
        f"DELETE FROM notifications WHERE order_id = {order}",
        f"DELETE FROM deadlines WHERE order_id = {order}",
        f"DELETE FROM refused_scans WHERE order_id = {order}",
        "DELETE FROM signatures WHERE event_id IN "
        f"(SELECT id FROM custody_events WHERE order_id = {order})",
        f"DELETE FROM custody_events WHERE order_id = {order}",
        f"DELETE FROM chain_heads WHERE key = 'order:{order}'",
    )
    finding = _verify(world).finding
    assert finding is not None
    assert finding.chain == f"order:{order}"


def test_reordered_records_are_found(world: World) -> None:
    made = a_record(world)
    first, second = _event(world, made["order_id"], 2), _event(world, made["order_id"], 3)
    tamper(
        world,
        f"UPDATE custody_events SET chain_position = -1 WHERE id = {first}",
        f"UPDATE custody_events SET chain_position = 2 WHERE id = {second}",
        f"UPDATE custody_events SET chain_position = 3 WHERE id = {first}",
    )
    finding = _verify(world).finding
    assert finding is not None
    assert finding.position == 2


def _readings_and_a_hold(world: World) -> None:
    """A shipper's logger file with an excursion: a readings record whose details carry
    floats, and the holds it puts on both bags."""
    start = now() - dt.timedelta(days=2)
    with time_machine.travel(start, tick=True):
        _order, _units, shipment = shipped(world, serial="DS-AUDIT")
    hot = csv_file(start + MINUTE, 24 * 60, lambda i: -140.25 if 600 <= i < 620 else -186.0)
    assert upload(world, shipment, hot).status_code == 201


def test_a_verify_reads_every_record_as_its_seal_wrote_it(world: World) -> None:
    """The verify reads the record its own way (the database renders each record's canonical
    form, each JSON document is put in canonical form once for all the records carrying it):
    for every kind of record those are the bytes ``canonical`` makes of the reference
    reading, and what an identity check reads is the same."""
    a_record(world)
    _readings_and_a_hold(world)
    world.scan("op", "=W000099999999900", "receive", "MFG-1")  # names no bag: MFG-1's chain
    world.scan("op", 'Ünïcode "quoted" \\ back\tslash ✓ 100%', "receive", "MFG-1")
    an_unattributed_refusal(world)
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        reference = list(audit.all_links(uow.session))
        fast = list(audit.hashed_links(uow.session))
    assert [(i.table, i.id, i.chain, i.position, i.prev_hash, i.hash) for i in fast] == [
        (i.table, i.id, i.chain, i.position, i.prev_hash, i.hash) for i in reference
    ]
    assert [i.sealed for i in fast] == [canonical(i.content) for i in reference]
    for quick, full in zip(fast, reference, strict=True):
        assert quick.content.items() <= full.content.items()
        assert {"order_id", "unit_id", "actor_id", "site_id"} <= quick.content.keys()
        assert quick.links_up()
    assert any("details" in i.content for i in fast)
    assert any(i.chain == UNATTRIBUTED for i in fast)
    assert any(i.chain.startswith("site:") and "chain_site_id" in i.content for i in fast)
    assert {i.table for i in fast} == {"custody_events", "refused_scans"}
    assert any(b'\\"quoted\\"' in (i.sealed or b"") for i in fast)  # escapes, as Python's


def test_records_from_before_a_document_was_sealed_verify(world: World) -> None:
    """A record with no details (JSON null) hashes as one from before details were sealed,
    whose column a migration left NULL: both verify, and the verify reads both."""
    made = a_record(world)
    tamper(
        world,
        "UPDATE custody_events SET details = NULL WHERE order_id = "
        f"{made['order_id']} AND chain_position = 2",
    )
    assert (
        _rows(
            world,
            f"SELECT count(*) FROM custody_events WHERE order_id = {made['order_id']} "
            "AND details IS NULL",
        )[0][0]
        == 1
    )
    report = _verify(world)
    assert report.ok, report.finding


EDITABLE = {"custody_events": "review_reason", "refused_scans": "detail"}


@pytest.mark.parametrize(
    ("whose", "table"),
    [
        ("bag", "refused_scans"),
        ("other", "custody_events"),
        ("nobody", "refused_scans"),
        ("of old", "refused_scans"),
    ],
)
def test_a_timestamp_the_database_spells_otherwise_is_not_taken_for_an_edit(
    world: World, whose: str, table: str
) -> None:
    """Where the database spells a value unlike the canonical form (a year before 1000 is
    0999 to PostgreSQL and SQLite, 999 to Python's strftime), the verify reads that chain the
    reference way before it calls a record edited: the chain's last record (an order's, or
    the chain of refusals that name no bag), resealed with such a timestamp, verifies, and the
    same record with a field changed still does not."""
    made = a_record(world)
    assert world.scan("op", "=W000099999999900", "receive", "MFG-1").status_code in (404, 422)
    if whose == "nobody":  # the chain of the scanner's site
        (site_id,) = _rows(world, "SELECT id FROM sites WHERE code = 'MFG-1'")[0]
        key = f"site:{site_id}"
    elif whose == "of old":
        an_unattributed_refusal(world)
        key = UNATTRIBUTED
    else:
        (order_id,) = _rows(world, f"SELECT id FROM orders WHERE coi = '{made[whose]['coi']}'")[0]
        key = f"order:{order_id}"
    factory = world.app.extensions["vein2vein"].db.session_factory
    with UnitOfWork(factory) as uow:
        last = [i for i in audit.all_links(uow.session) if i.chain == key][-1]
    assert last.table == table
    long_ago = dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    resealed = link(last.prev_hash, {**last.content, "occurred_at": long_ago})
    postgres = _engine(world).dialect.name == "postgresql"
    stored = "0999-01-02 03:04:05" + ("+00" if postgres else ".000000")
    tamper(
        world,
        f"UPDATE {table} SET occurred_at = '{stored}', hash = '{resealed}' WHERE id = {last.id}",
        f"UPDATE chain_heads SET head = '{resealed}' WHERE key = '{key}'",
    )
    with UnitOfWork(factory) as uow:
        links = audit.hashed_links(uow.session)
        (read,) = [i for i in links if (i.table, i.id) == (table, last.id)]
    assert link(read.prev_hash, read.content) != resealed  # the fast reading differs here
    report = _verify(world)
    assert report.ok, report.finding
    tamper(world, f"UPDATE {table} SET {EDITABLE[table]} = 'rewritten' WHERE id = {last.id}")
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id) == (table, last.id)
    assert "edited" in finding.problem


@pytest.mark.postgres
def test_concurrent_scans_of_one_orders_bags_keep_one_chain(pg_app: Any) -> None:
    world = World.build(pg_app)
    order = world.enroll("PAT-RACE")
    bags = [world.collect(order["coi"]) for _ in range(6)]
    errors: list[Any] = []

    def scan(bag: dict[str, Any]) -> None:
        client = World(app=world.app, client=world.app.test_client(), tokens=world.tokens)
        for action in ("verify_label", "cryopreserve"):
            response = client.scan("aph", bag["barcode"], action, "APH-1")
            if response.status_code != 201:
                errors.append(response.json)

    threads = [threading.Thread(target=scan, args=(bag,)) for bag in bags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = _verify(world)
    assert report.ok, report.finding
    assert report.records == 1 + 6 + 12  # the enrolment, 6 collections, 12 scans


# on the embedded default a newcomer runs; the chain checks run on both in the tests above (CI time)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_cli_verifies_the_demo_and_names_the_break(
    cli_env: dict[str, str],  # noqa: F811 - the fixture
    database_url: str,
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VEIN2VEIN, *args],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    assert run("db", "upgrade").returncode == 0
    assert run("demo").returncode == 0
    assert run("audit", "checkpoint").returncode == 0
    good = run("audit", "verify")
    assert good.returncode == 0, good.stderr
    assert "verified:" in good.stdout
    split = run("audit", "verify", "--jobs", "3")  # three processes, each a part of the orders
    assert split.returncode == 0, split.stderr
    assert split.stdout == good.stdout
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            connection.exec_driver_sql("DROP TRIGGER custody_events_no_update")
        (target,) = connection.exec_driver_sql(
            "SELECT id FROM custody_events WHERE chain_position = 2 ORDER BY id LIMIT 1"
        ).one()
        connection.exec_driver_sql(
            f"UPDATE custody_events SET site_id = site_id + 1 WHERE id = {target}"
        )
    engine.dispose()
    bad = run("audit", "verify")
    assert bad.returncode == 1
    assert f"custody_events id {target}" in bad.stderr
    assert "edited" in bad.stderr
    split_bad = run("audit", "verify", "--jobs", "3")
    assert split_bad.returncode == 1
    assert split_bad.stderr.splitlines()[-2] == bad.stderr.splitlines()[-2]  # the BROKEN line


def _received(world: World) -> dict[str, Any]:
    """A bag received at MFG-1 (a critical step there), signed in the act by the operator."""
    bag = world.bag_at("receive", "PAT-SIGN")
    timeline = world.get("op", f"/api/v1/orders/{bag['coi']}/events").json["events"]
    (receipt,) = [e for e in timeline if e["action"] == "receive"]
    assert receipt["signature"] == "signed"
    for who in ("op", "qa"):
        world.browser(who)  # sets the test password
    return {"bag": bag, "receipt": receipt}


def _sign(world: World, who: str, coi: str, sequence: int, **body: Any) -> Any:
    payload = {"email": f"{who}@example.org", "password": PASSWORD, "meaning": "performed"}
    return world.post(who, f"/api/v1/orders/{coi}/events/{sequence}/signatures", payload | body)


def test_a_critical_step_is_signed_in_its_act_and_shown(world: World) -> None:
    bag = world.bag_at("deliver", "PAT-SIGN")
    coi = bag["coi"]
    unsigned = world.scan("op", bag["barcode"], "receive", "MFG-1", sign=False)
    assert unsigned.status_code == 422
    assert unsigned.json["code"] == "signature_required"
    wrong = world.scan(
        "op", bag["barcode"], "receive", "MFG-1", signature={"password": "not my password"}
    )
    assert wrong.status_code == 403
    assert wrong.json["code"] == "signature_invalid"
    signed = world.scan("op", bag["barcode"], "receive", "MFG-1")
    assert signed.status_code == 201, signed.json
    (given,) = signed.json["events"][0]["signatures"]
    assert (given["meaning"], given["printed_name"]) == ("performed", "op")
    sequence = signed.json["sequence"]
    timeline = world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
    (receipt,) = [e for e in timeline if e["sequence"] == sequence]
    assert (receipt["signing"], receipt["signature"]) == ("signed", "signed")
    assert receipt["signatures"][0]["signed_at"]
    assert _sign(world, "op", coi, sequence).status_code == 409  # signed in its act, once
    audited = world.get("care", f"/api/v1/orders/{coi}/audit").json
    (link,) = [r for r in audited["records"] if r["sequence"] == sequence]
    assert link["signatures"][0]["record_hash"] == link["hash"]
    assert audited["verified"] is True
    # a step that is not critical at the site has nothing to sign
    pack = next(e for e in timeline if e["action"] == "pack")
    assert _sign(world, "aph", coi, pack["sequence"]).status_code == 422


def test_a_witness_is_a_second_person_when_the_site_requires_one(world: World) -> None:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        site = admin.site_by_code(uow.session, "MFG-1")
        signing.set_critical_step(
            uow.session, site=site, step="receive", witness=True, required=True
        )
        uow.commit()
    bag = world.bag_at("deliver", "PAT-WITNESS")
    alone = world.scan("op", bag["barcode"], "receive", "MFG-1")
    assert alone.status_code == 422
    assert alone.json["code"] == "signature_required"
    witnessed = world.scan(
        "op",
        bag["barcode"],
        "receive",
        "MFG-1",
        witness={"email": "qa@example.org", "password": world.password("qa")},
    )
    assert witnessed.status_code == 201, witnessed.json
    signatures = witnessed.json["events"][0]["signatures"]
    assert [(s["meaning"], s["witness"]) for s in signatures] == [
        ("performed", False),
        ("witness", True),
    ]
    timeline = world.get("op", f"/api/v1/orders/{bag['coi']}/events").json["events"]
    sequence = witnessed.json["sequence"]
    assert [e["signature"] for e in timeline if e["sequence"] == sequence] == ["signed"]


def test_a_signature_moved_to_another_record_fails_verification(world: World) -> None:
    made = _received(world)
    coi, sequence = made["bag"]["coi"], made["receipt"]["sequence"]
    (signature,) = made["receipt"]["signatures"]  # given in the act
    (other,) = _rows(
        world,
        f"SELECT e.id FROM custody_events e JOIN orders o ON o.id = e.order_id "
        f"WHERE o.coi = '{coi}' AND e.sequence = {sequence - 1}",
    )[0:1]
    assert signature["record_hash"]
    tamper(world, f"UPDATE signatures SET event_id = {other[0]}")
    finding = _verify(world).finding
    assert finding is not None
    assert finding.table == "signatures"
    assert "moved" in finding.problem


def test_a_correction_points_at_the_event_and_both_stay(world: World) -> None:
    bag = world.bag_at("cryopreserve", "PAT-CORR")
    coi = bag["coi"]
    signed = {"signature": {"password": PASSWORD}}
    for who, status in (("aph", 403), ("courier", 404), ("qa2", 404), ("admin2", 404)):
        world.browser(who)  # their own password: what they sign with does not open A's order
        refused = world.post(
            who, f"/api/v1/orders/{coi}/corrections", {"sequence": 2, "reason": "x", **signed}
        )
        assert refused.status_code == status
    world.browser("admin")
    correction = world.post(
        "admin",
        f"/api/v1/orders/{coi}/corrections",
        {
            "sequence": 2,
            "reason": "label verified on the wrong workstation; re-checked by hand",
            **signed,
        },
    )
    assert correction.status_code == 201, correction.json
    assert correction.json["action"] == "correct"
    assert correction.json["corrects"] == 2
    events = world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
    assert [e["action"] for e in events][-1] == "correct"
    (corrected,) = [e for e in events if e["sequence"] == 2]
    assert corrected["action"] == "verify_label"  # the corrected event, unchanged
    assert world.get("care", f"/api/v1/units/{bag['din']}").json["state"] == "cryopreserved"
    assert _verify(world).ok
