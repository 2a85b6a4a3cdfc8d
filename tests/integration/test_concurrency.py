"""Idempotent replays and real races between concurrent requests (threads, real database)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import CustodyEvent, Scan
from tests.world import World


def checked_label(world: World, bag: dict[str, Any]) -> str:
    """The bag's label, printed, and the text of its 2-D code: what a label check scans."""
    world.label("aph", bag["din"])
    return str(bag["label_2d"])


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Start the calls in threads at the same moment; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def events(world: World) -> list[CustodyEvent]:
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        return list(uow.session.exec(select(CustodyEvent)).all())


def post_scan(world: World, body: dict[str, Any]) -> Callable[[], Any]:
    client = world.app.test_client()
    return lambda: client.post("/api/v1/scans", json=body, headers=world.headers("aph"))


def test_repeating_an_event_id_returns_the_original_event(world: World) -> None:
    bag = world.bag_at("collected")
    body = {
        "barcode": checked_label(world, bag),
        "action": "verify_label",
        "site": "APH-1",
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+01:00",
    }
    first = world.post("aph", "/api/v1/scans", body)
    again = world.post("aph", "/api/v1/scans", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json["replayed"] is False
    assert again.json["replayed"] is True
    assert again.json["events"] == first.json["events"]
    assert again.json["occurred_at"] == first.json["occurred_at"]
    assert len([e for e in events(world) if e.action == "verify_label"]) == 1


def test_a_replay_after_the_bag_moved_on_still_returns_the_original(world: World) -> None:
    bag = world.bag_at("collected")
    body = {
        "barcode": checked_label(world, bag),
        "action": "verify_label",
        "site": "APH-1",
        "event_id": str(uuid.uuid4()),
    }
    first = world.post("aph", "/api/v1/scans", body)
    assert world.scan("aph", bag["barcode"], "cryopreserve", "APH-1").status_code == 201
    again = world.post("aph", "/api/v1/scans", body)  # the scanner retries a lost answer
    assert again.status_code == 200
    assert again.json["events"] == first.json["events"]


def test_racing_scans_for_one_transition_exactly_one_wins(world: World) -> None:
    for n in range(8):
        bag = world.bag_at("collected", f"PAT-{n}")
        bodies = [
            {
                "barcode": checked_label(world, bag),
                "action": "verify_label",
                "site": "APH-1",
                "event_id": str(uuid.uuid4()),
            }
            for _ in range(2)
        ]
        responses = run_together(*(post_scan(world, body) for body in bodies))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409], [r.json for r in responses]
        loser = next(r for r in responses if r.status_code == 409)
        assert loser.json["code"] == "illegal_transition"
    verified = [e for e in events(world) if e.action == "verify_label"]
    assert len(verified) == 8


def test_racing_replays_of_one_event_id_make_one_event(world: World) -> None:
    bag = world.bag_at("collected")
    body = {
        "barcode": checked_label(world, bag),
        "action": "verify_label",
        "site": "APH-1",
        "event_id": str(uuid.uuid4()),
    }
    responses = run_together(*(post_scan(world, body) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({str(r.json["events"]) for r in responses}) == 1
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert len(uow.session.exec(select(Scan)).all()) == 1


def test_concurrent_scans_of_one_orders_bags_keep_its_sequence_gapless(world: World) -> None:
    order = world.enroll()
    bags = [world.collect(order["coi"]) for _ in range(6)]
    bodies = [
        {
            "barcode": checked_label(world, b),
            "action": "verify_label",
            "site": "APH-1",
            "event_id": str(uuid.uuid4()),
        }
        for b in bags
    ]
    responses = run_together(*(post_scan(world, body) for body in bodies))
    assert [r.status_code for r in responses] == [201] * 6
    sequences = sorted(e.sequence for e in events(world))
    assert sequences == list(range(13))  # the enrolment (0), 6 collections, 6 label checks


def test_concurrent_enrolments_and_collections_get_unique_identifiers(world: World) -> None:
    clients = [world.app.test_client() for _ in range(6)]
    body = {
        "patient_ref": "P",
        "product": "axi-cel",
        "collection_site": "APH-1",
        "manufacturing_site": "MFG-1",
        "treatment_site": "TRT-1",
    }
    orders = run_together(
        *(
            (lambda c=c: c.post("/api/v1/orders", json=body, headers=world.headers("care")))
            for c in clients
        )
    )
    assert [r.status_code for r in orders] == [201] * 6
    cois = {r.json["coi"] for r in orders}
    assert len(cois) == 6
    coi = next(iter(cois))
    units = run_together(
        *(
            (
                lambda c=c: c.post(
                    f"/api/v1/orders/{coi}/collections", json={}, headers=world.headers("aph")
                )
            )
            for c in clients
        )
    )
    assert [r.status_code for r in units] == [201] * 6
    assert len({r.json["din"] for r in units}) == 6


def test_concurrent_receipts_of_one_shipment_leave_it_received(world: World) -> None:
    for trial in range(3):
        bags = [world.bag_at("pack", f"PAT-{trial}-{n}") for n in range(4)]
        shipment = world.ship([b["din"] for b in bags])
        for action, site in (("pickup", "APH-1"), ("deliver", "MFG-1")):
            assert world.scan("courier", shipment["barcode"], action, site).status_code == 201
        calls = []
        for bag in bags:
            client = world.app.test_client()
            body = {
                "barcode": bag["barcode"],
                "action": "receive",
                "site": "MFG-1",
                "event_id": str(uuid.uuid4()),
                "signature": world.signature("op"),  # MFG-1 signs its receipts
            }
            calls.append(
                lambda c=client, b=body: c.post(
                    "/api/v1/scans", json=b, headers=world.headers("op")
                )
            )
        assert [r.status_code for r in run_together(*calls)] == [201] * 4
        final = world.get("op", f"/api/v1/shipments/{shipment['id']}").json
        assert final["state"] == "received"


def test_one_event_id_raced_for_two_bags_is_one_scan_and_one_refusal(world: World) -> None:
    first = world.bag_at("collected", "PAT-1")
    second = world.bag_at("collected", "PAT-2")
    event_id = str(uuid.uuid4())
    bodies = [
        {
            "barcode": checked_label(world, bag),
            "action": "verify_label",
            "site": "APH-1",
            "event_id": event_id,
        }
        for bag in (first, second)
    ]
    responses = run_together(*(post_scan(world, body) for body in bodies))
    assert sorted(r.status_code for r in responses) == [201, 422], [r.json for r in responses]
    refused = next(r for r in responses if r.status_code == 422)
    assert refused.json["code"] == "event_id_reused"
    assert len([e for e in events(world) if e.action == "verify_label"]) == 1
