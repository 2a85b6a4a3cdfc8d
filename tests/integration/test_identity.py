"""Identity inside the chain: the COI, the patient reference, DINs, e-mails and site codes are
sealed by the records that name them; the database refuses to change them, and `verify` names
the row even when someone changed one with the triggers dropped."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from tests.integration.test_audit import _engine, _rows, _verify, a_record
from tests.world import World

IDENTITY_TRIGGERS = ("orders", "units", "users", "sites")


def tamper(world: World, statement: str) -> None:
    """A superuser with every trigger off (PostgreSQL), or the triggers dropped (SQLite)."""
    engine = _engine(world)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            for table in IDENTITY_TRIGGERS:
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_identity")
        connection.exec_driver_sql(statement)


def _ids(world: World, made: dict[str, Any]) -> dict[str, int]:
    unit_id = _rows(world, f"SELECT id FROM units WHERE din = '{made['bag']['din']}'")[0][0]
    user_id = _rows(world, "SELECT id FROM users WHERE email = 'courier@example.org'")[0][0]
    site_id = _rows(world, "SELECT id FROM sites WHERE code = 'COUR-1'")[0][0]
    treatment = _rows(world, "SELECT id FROM sites WHERE code = 'TRT-1'")[0][0]
    other = _rows(world, "SELECT id FROM sites WHERE code = 'TRT-2'")[0][0]
    return {
        "order": made["order_id"],
        "unit": unit_id,
        "user": user_id,
        "site": site_id,
        "treatment": treatment,
        "other_treatment": other,
    }


CHANGES = {
    "patient reference": (
        "orders",
        "order",
        "UPDATE orders SET patient_ref = 'PAT-SOMEONE-ELSE' WHERE id = {order}",
    ),
    "COI": ("orders", "order", "UPDATE orders SET coi = 'CHA100126ZZZZZZ' WHERE id = {order}"),
    "product": ("orders", "order", "UPDATE orders SET product = 'tisa-cel' WHERE id = {order}"),
    "treatment site": (
        "sites",
        "other_treatment",
        "UPDATE orders SET treatment_site_id = {other_treatment} WHERE id = {order}",
    ),
    "DIN": ("units", "unit", "UPDATE units SET din = 'A100126999999' WHERE id = {unit}"),
    "bag kind": ("units", "unit", "UPDATE units SET kind = 'product' WHERE id = {unit}"),
    "e-mail": ("users", "user", "UPDATE users SET email = 'someone@example.org' WHERE id = {user}"),
    "site code": ("sites", "site", "UPDATE sites SET code = 'COUR-9' WHERE id = {site}"),
}


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_the_database_refuses_to_change_an_identity(world: World, what: str) -> None:
    made = a_record(world)
    _table, _row, statement = CHANGES[what]
    ids = _ids(world, made)
    with pytest.raises(DBAPIError, match="identity"), _engine(world).begin() as connection:
        connection.exec_driver_sql(statement.format(**ids))
    assert _verify(world).ok


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_verify_names_the_row_whose_identity_differs_from_what_its_chain_sealed(
    world: World, what: str
) -> None:
    made = a_record(world)
    table, row, statement = CHANGES[what]
    ids = _ids(world, made)
    tamper(world, statement.format(**ids))
    finding = _verify(world).finding
    assert finding is not None, f"{what} changed and nothing found"
    assert (finding.table, finding.id) == (table, ids[row]), str(finding)
    assert "identity was rewritten" in finding.problem
    assert "PAT-SOMEONE-ELSE" not in str(finding)  # a patient reference is never printed


def test_the_ordinary_changes_of_a_record_still_happen(world: World) -> None:
    """States, custodians, activity and a FIN given for the first time are not identities."""
    a_record(world)
    with _engine(world).begin() as connection:
        connection.exec_driver_sql(
            "UPDATE users SET active = false WHERE email = 'aph2@example.org'"
        )
        connection.exec_driver_sql("UPDATE sites SET fin = 'T5005' WHERE code = 'TRT-2'")
    with pytest.raises(DBAPIError, match="identity"), _engine(world).begin() as connection:
        connection.exec_driver_sql("UPDATE sites SET fin = 'T6006' WHERE code = 'TRT-2'")
    for table in IDENTITY_TRIGGERS:
        with pytest.raises(DBAPIError, match="never"), _engine(world).begin() as connection:
            connection.exec_driver_sql(f"DELETE FROM {table}")
    assert _verify(world).ok


def test_an_order_and_a_bag_written_behind_the_applications_back_are_found(world: World) -> None:
    made = a_record(world)
    row = _rows(world, f"SELECT * FROM orders WHERE id = {made['order_id']}")[0]._mapping
    columns = [c for c in row if c not in ("id", "coi")]
    values = ", ".join(
        "NULL"
        if row[c] is None
        else repr(str(row[c]))
        if not isinstance(row[c], int | float)
        else str(row[c])
        for c in columns
    )
    with _engine(world).begin() as connection:
        connection.exec_driver_sql(
            f"INSERT INTO orders (coi, {', '.join(columns)}) VALUES ('CHA100126ZZZZZ9', {values})"
        )
    finding = _verify(world).finding
    assert finding is not None
    assert finding.table == "orders"
    assert "no record of its chain seals it" in finding.problem


def test_the_enrolment_opens_the_chain_and_seals_the_order(world: World) -> None:
    order = world.enroll("PAT-SEALED")
    timeline = world.get("care", f"/api/v1/orders/{order['coi']}/events").json["events"]
    assert [(e["sequence"], e["action"], e["site"]) for e in timeline] == [(0, "enroll", "TRT-1")]
    audited = world.get("care", f"/api/v1/orders/{order['coi']}/audit").json
    assert audited["verified"] is True
    assert [(r["position"], r["sequence"], r["action"]) for r in audited["records"]] == [
        (1, 0, "enroll")
    ]
    (sealed,) = _rows(world, "SELECT identity FROM custody_events WHERE action = 'enroll'")
    assert "PAT-SEALED" not in str(sealed)  # the reference is sealed as a keyed digest
    assert order["coi"] in str(sealed)
