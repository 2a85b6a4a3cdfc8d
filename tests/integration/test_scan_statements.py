"""What a scan costs in round trips to the database: a property of the code, not a timing.

A plain scan (one bag, no shipment, no leg opened or closed: a label check by its 2-D code)
reads its token, claims its event_id, locks and reads the bag, its order and its chain's head in
one statement (with the site's signing rule for the step, whether the label was printed and
whether its batch's release is signed, as subqueries of that statement), and writes
the head, the event, the order, the bag and its news: eight statements. On PostgreSQL the
head, the event, the order, the bag and the news are one statement (data-modifying CTEs,
services.operations.record._write_at_once), and the token is read outside any transaction: four.
Nothing it wrote is read back, and the sites come from the per-process cache
(services.db.cache).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import CustodyEvent, Notification
from tests.world import World

PLAIN_SCAN_STATEMENTS = {"sqlite": 8, "postgresql": 4}


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    engine = world.app.extensions["vein2vein"].db.engine
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(" ".join(statement.split())[:120])

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_a_plain_scan_takes_eight_statements_four_on_postgresql(world: World) -> None:
    unit = world.bag_at("collected")
    world.verify_label("aph", unit)  # the sites are cached by now
    other = world.bag_at("collected", "PAT-OTHER")
    world.label("aph", other["din"])
    with statements(world) as seen:
        response = world.scan("aph", other["label_2d"], "verify_label", "APH-1")
    assert response.status_code == 201, response.json
    dialect = world.app.extensions["vein2vein"].db.engine.dialect.name
    assert len(seen) <= PLAIN_SCAN_STATEMENTS[dialect], "\n".join(seen)
    # and the answer is what the record says
    timeline = world.get("aph", f"/api/v1/orders/{other['coi']}/events").json["events"]
    (event,) = [e for e in timeline if e["action"] == "verify_label"]
    answered = response.json["events"][0]
    for field in ("sequence", "din", "coi", "site", "actor", "custodian", "from_state", "to_state"):
        assert answered[field] == event[field], field
    assert response.json["event_id"] == event["event_id"]


def test_a_replay_answers_from_the_record_and_writes_nothing(world: World) -> None:
    unit = world.bag_at("collected")
    world.label("aph", unit["din"])
    body = {
        "barcode": unit["label_2d"],
        "action": "verify_label",
        "site": "APH-1",
        "event_id": "0b7c54bc-54cb-4d8e-9b5b-34c1f1c0a001",
    }
    first = world.post("aph", "/api/v1/scans", body)
    assert first.status_code == 201
    with statements(world) as seen:
        again = world.post("aph", "/api/v1/scans", body)
    assert again.status_code == 200
    assert again.json["events"] == first.json["events"]
    assert again.json["replayed"] is True
    assert not [s for s in seen if s.upper().startswith(("UPDATE", "DELETE"))], seen
    assert [s for s in seen if s.upper().startswith("INSERT")] == [seen[1]]  # the claim only
    reused = world.post("aph", "/api/v1/scans", {**body, "action": "cryopreserve"})
    assert reused.status_code == 422, reused.json
    assert reused.json["code"] == "event_id_reused"


def test_the_news_of_a_plain_scan_names_its_event(world: World) -> None:
    """The outbox row written in the scan's one statement (PostgreSQL) or after its flush
    (SQLite) points at the event it tells of, and waits for the workers."""
    unit = world.bag_at("collected")
    body = {"coi": unit["coi"], "channel": "webhook", "target": "https://example.org/hook"}
    hook = world.post("care", "/api/v1/subscriptions", body)
    assert hook.status_code == 201, hook.json
    world.label("aph", unit["din"])
    with statements(world) as seen:
        response = world.scan("aph", unit["label_2d"], "verify_label", "APH-1")
    assert response.status_code == 201, response.json
    dialect = world.app.extensions["vein2vein"].db.engine.dialect.name
    assert len(seen) <= PLAIN_SCAN_STATEMENTS[dialect], "\n".join(seen)
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        event = uow.session.exec(
            select(CustodyEvent).where(CustodyEvent.action == "verify_label")
        ).one()
        (news,) = uow.session.exec(
            select(Notification).where(Notification.subscription_id == hook.json["id"])
        ).all()
    assert (news.source, news.source_id, news.kind) == ("custody_event", event.id, "verify_label")
    assert news.state == "pending"
    assert news.payload["sequence"] == event.sequence == response.json["events"][0]["sequence"]
