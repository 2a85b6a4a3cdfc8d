"""Bounded work for any caller: what a body, a capture, a token or a refusal may cost.

Each test is the adversary's: a body nested 200,000 deep, a capture of tens of thousands of
events, a flood of made-up tokens, a flood of refused scans. Each is answered with its 4xx and
its code; how fast is measured in bench/ (bench/epcis_capture.py), not asserted here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask.cli import ScriptInfo
from sqlmodel import col, select

from services import cli
from services.db import UnitOfWork
from services.db.models import ChainHead, Order, RefusedScan, Scan, Site, Subscription
from services.domain.epcis import Uris
from services.domain.identifiers import Din
from services.operations import access, admin, audit, epcis, epcis_query
from services.operations.epcis import CAPTURE_NAMESPACE
from tests.integration.test_audit import an_unattributed_refusal, tamper
from tests.integration.test_notifications import deliver_due, subscribe
from tests.receivers import webhook_receiver
from tests.world import World, csrf_token

DEEP = b"[" * 200_000
BASE = "https://vein2vein.example/id"


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == code


@pytest.mark.parametrize(
    "path",
    ["/api/v1/scans", "/api/v1/orders", "/api/v1/subscriptions", "/api/v1/epcis/capture"],
)
def test_a_body_nested_200000_deep_is_invalid_json_not_a_500(world: World, path: str) -> None:
    for mimetype in ("application/json", "application/ld+json"):
        response = world.client.post(
            path, data=DEEP, content_type=mimetype, headers=world.headers("aph")
        )
        assert_problem(response, 400, "invalid_json")
    # sixty-four deep is still parsed, and answered as the route answers what it does not take
    shallow = b"[" * 64 + b"]" * 64
    response = world.client.post(
        path, data=shallow, content_type="application/json", headers=world.headers("aph")
    )
    assert response.status_code == 422, response.get_data(as_text=True)[:300]


def test_a_page_form_sent_as_json_nested_too_deep_is_a_400_page(world: World) -> None:
    client = world.app.test_client()
    token = csrf_token(client)
    response = client.post(
        "/login", data=DEEP, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "invalid_json" in response.get_data(as_text=True)


def test_a_body_over_the_size_limit_is_413_before_it_is_read(world: World) -> None:
    big = b'{"barcode": "' + b"x" * (1024 * 1024) + b'"}'
    response = world.client.post(
        "/api/v1/scans", data=big, content_type="application/json", headers=world.headers("aph")
    )
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    # a capture may be larger (4 MiB), but not without bound
    huge = b'{"epcisBody": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = world.client.post(
        "/api/v1/epcis/capture",
        data=huge,
        content_type="application/json",
        headers=world.headers("courier"),
    )
    assert response.status_code == 413


def _event(n: int) -> dict[str, Any]:
    """A small departure (as partners' systems write them: about 160 bytes compact)."""
    return {
        "type": "ObjectEvent",
        "eventTime": "2026-12-01T10:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:sscc:0614141.{n:010d}"],
        "action": "OBSERVE",
        "bizStep": "departing",
    }


def capture_of(count: int) -> bytes:
    """An EPCISDocument of ``count`` departures, written compactly (about 150 bytes each)."""
    return json.dumps(
        {
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": dt.datetime.now(dt.UTC).isoformat(),
            "epcisBody": {"eventList": [_event(n) for n in range(count)]},
        },
        separators=(",", ":"),
    ).encode()


def test_a_capture_over_the_event_cap_is_refused_before_it_is_validated(world: World) -> None:
    """A 3 MB capture of 22,000 events (each one invalid against the schema, which is never
    asked): refused for its count, not for its content. bench/epcis_capture.py times it."""
    body = capture_of(22_000).replace(b'"action":"OBSERVE"', b'"action":12')
    assert len(body) > 3_000_000
    response = world.client.post(
        "/api/v1/epcis/capture",
        data=body,
        content_type="application/ld+json",
        headers=world.headers("courier"),
    )
    assert_problem(response, 422, "invalid_request")
    assert "at most 500 events" in response.json["detail"]
    assert "22000" in response.json["detail"]
    # within the cap, the schema is asked: the same invalid events are named as such
    small = capture_of(3).replace(b'"action":"OBSERVE"', b'"action":12')
    response = world.client.post(
        "/api/v1/epcis/capture",
        data=small,
        content_type="application/ld+json",
        headers=world.headers("courier"),
    )
    assert_problem(response, 422, "invalid_epcis")


def test_a_capture_whose_events_hold_too_much_is_refused_before_it_is_read(world: World) -> None:
    """500 events (within the count), each naming 200 EPCs: the event hash and the schema
    would cost in proportion; refused for what they hold, before either is asked."""
    doc = json.loads(capture_of(500))
    for event in doc["epcisBody"]["eventList"]:
        event["epcList"] = [f"urn:epc:id:sscc:0614141.{k:010d}" for k in range(200)]
    response = world.post("courier", "/api/v1/epcis/capture", doc)
    assert_problem(response, 422, "invalid_request")
    assert "values" in response.json["detail"]
    # as many as an event may hold on average (48: its six members and 42 EPCs) are read
    for event in doc["epcisBody"]["eventList"]:
        event["epcList"] = event["epcList"][:42]
    response = world.post("courier", "/api/v1/epcis/capture", doc)
    assert response.status_code == 200, response.json
    assert response.json["refused"] == 500  # none of those EPCs is one of ours


def test_the_fast_schema_check_agrees_with_the_reference(world: World) -> None:
    """jsonschema-rs answers captures; Python's jsonschema (the reference) must agree on what
    is valid, for documents we export and for broken ones."""
    from services import epcis_schema
    from tests.integration.test_epcis import whole_loop

    coi, _din = whole_loop(world)
    exported = world.get("care", f"/api/v1/orders/{coi}/epcis").json
    captured = json.loads(capture_of(3))
    broken = []
    for path, value in [
        (("type",), "EPCISQueryDocument"),
        (("schemaVersion",), 2),
        (("epcisBody", "eventList", 0, "action"), "MOVE"),
        (("epcisBody", "eventList", 0, "eventTimeZoneOffset"), "+25:00"),
        (("epcisBody", "eventList", 0, "epcList"), "not a list"),
        (("epcisBody", "eventList", 1, "eventTime"), 12),
        (("epcisBody", "eventList", 1, "readPoint"), {"id": 5}),
        (("epcisBody", "eventList", 2), []),
    ]:
        doc = json.loads(json.dumps(captured))
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        broken.append(doc)
    missing = json.loads(json.dumps(captured))
    del missing["epcisBody"]["eventList"][0]["eventTime"]
    broken.append(missing)
    for doc in [exported, captured, *broken]:
        reference = sorted(
            "/" + "/".join(str(p) for p in e.absolute_path)
            for e in epcis_schema.validator().iter_errors(doc)
        )
        fast = [e["path"] for e in epcis_schema.errors(doc, limit=10_000)]
        assert (reference == []) == (fast == []), (reference, fast)
        assert set(fast) <= set(reference) | {"/"}, (reference, fast)
    assert all(epcis_schema.errors(doc) for doc in broken)


def _statements(app: Any) -> list[str]:
    """Every SQL statement the app's engine runs from now on."""
    seen: list[str] = []
    engine = app.extensions["vein2vein"].db.engine
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


# the limits here count in fixed windows of an hour: a minute's edge crossed mid-test reset them
def test_made_up_tokens_from_one_address_are_limited_by_address(app_factory: Any) -> None:
    """Each made-up bearer string was a rate-limit count of its own: now every call answered
    401 counts against its client address, and past the limit the address is refused (429)
    before any token of it is looked up, but for tokens that authenticated lately."""
    world = World.build(app_factory(api_auth_failure_limit="5 per hour"))
    attacker = {"REMOTE_ADDR": "203.0.113.7"}
    working = world.client.get(  # a scanner at that address, working a moment before
        "/api/v1/delays", headers=world.headers("aph"), environ_base=attacker
    )
    assert working.status_code == 200
    answers = [
        world.client.get(
            "/api/v1/delays",
            headers={"Authorization": f"Bearer made-up-{n}"},
            environ_base=attacker,
        ).status_code
        for n in range(6)
    ]
    assert answers == [401] * 5 + [429]  # five failures a window; the sixth is refused
    statements = _statements(world.app)
    refused = world.client.get(
        "/api/v1/delays", headers={"Authorization": "Bearer made-up-6"}, environ_base=attacker
    )
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert statements == []  # refused before the token was looked up
    no_token = world.client.get("/api/v1/delays", environ_base=attacker)
    assert_problem(no_token, 429, "rate_limited")
    # the OpenAPI document takes no token: still served
    assert world.client.get("/api/v1/openapi.json", environ_base=attacker).status_code == 200
    # the scanner that authenticated lately goes on; another address is not touched
    assert (
        world.client.get(
            "/api/v1/delays", headers=world.headers("aph"), environ_base=attacker
        ).status_code
        == 200
    )
    elsewhere = world.client.get(
        "/api/v1/delays",
        headers={"Authorization": "Bearer made-up-7"},
        environ_base={"REMOTE_ADDR": "198.51.100.2"},
    )
    assert_problem(elsewhere, 401, "unauthorized")
    # a token that never authenticated from this process waits out the window like the rest
    assert (
        world.client.get(
            "/api/v1/delays", headers=world.headers("care"), environ_base=attacker
        ).status_code
        == 429
    )


def test_unauthenticated_calls_are_limited_per_address(app_factory: Any) -> None:
    world = World.build(app_factory(api_auth_failure_limit="3 per hour"))
    answers = [world.client.get("/api/v1/delays").status_code for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]


# refusals: a chain per site, and a limit per user


def _factory(world: World) -> Any:
    return world.app.extensions["vein2vein"].db.session_factory


def _site_id(world: World, code: str) -> int:
    with UnitOfWork(_factory(world)) as uow:
        site = uow.session.exec(select(Site).where(Site.code == code)).one()
        assert site.id is not None
        return site.id


def _heads(world: World) -> dict[str, int]:
    with UnitOfWork(_factory(world)) as uow:
        return {h.key: h.length for h in uow.session.exec(select(ChainHead)).all()}


def _verify(world: World) -> audit.Report:
    with UnitOfWork(_factory(world)) as uow:
        return audit.verify(uow.session)


def test_a_refusal_of_a_bag_one_may_not_see_joins_ones_own_sites_chain(
    world: World, tmp_path: Any
) -> None:
    """Refusals that name no bag their scanner may see used to serialise on one chain for the
    whole installation; each now joins the chain of its scanner's site, and the chains of old
    and new verify side by side, through checkpoints, the CLI and an order's audit view."""
    an_unattributed_refusal(world)  # kept before site chains: stays in the unattributed chain
    bag = world.bag_at("deliver", "PAT-SITE")
    unknown = Din.generate(fin="A1001", year=26, sequence=999_998).barcode
    assert world.scan("op2", bag["barcode"], "receive", "MFG-2").status_code == 404
    assert world.scan("op2", unknown, "receive", "MFG-2").status_code == 404
    assert world.scan("op", unknown, "receive", "MFG-1").status_code == 404
    assert world.scan("op", bag["barcode"], "pack", "MFG-1").status_code == 409  # its order's
    mfg1, mfg2 = _site_id(world, "MFG-1"), _site_id(world, "MFG-2")
    heads = _heads(world)
    assert heads[f"site:{mfg2}"] == 2
    assert heads[f"site:{mfg1}"] == 1
    assert heads["unattributed"] == 1  # only the refusal of old
    with UnitOfWork(_factory(world)) as uow:
        kept = uow.session.exec(select(RefusedScan).order_by(col(RefusedScan.id))).all()
    assert [(r.order_id is None, r.chain_site_id) for r in kept] == [
        (True, None),
        (True, mfg2),
        (True, mfg2),
        (True, mfg1),
        (False, None),
    ]
    report = _verify(world)
    assert report.ok, report.finding
    with UnitOfWork(_factory(world)) as uow:
        checkpoint = audit.checkpoint(uow.session, now=dt.datetime.now(dt.UTC))
        uow.commit()
        assert {f"site:{mfg1}", f"site:{mfg2}", "unattributed"} <= set(checkpoint.heads)
    assert _verify(world).ok
    audited = world.get("aph", f"/api/v1/orders/{bag['coi']}/audit").json
    assert audited["verified"] is True
    assert [r["code"] for r in audited["records"] if r["record"] == "refused_scan"] == [
        "illegal_transition"
    ]
    # the CLI verifies them, and names a site chain's broken record
    result = CliRunner().invoke(
        cli.main, ["audit", "verify"], obj=ScriptInfo(create_app=lambda: world.app)
    )
    assert result.exit_code == 0, result.output
    (second,) = [r.id for r in kept if r.chain_site_id == mfg2][1:]
    tamper(world, f"UPDATE refused_scans SET detail = 'nothing happened' WHERE id = {second}")
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.chain, finding.table, finding.id) == (f"site:{mfg2}", "refused_scans", second)
    result = CliRunner().invoke(
        cli.main, ["audit", "verify"], obj=ScriptInfo(create_app=lambda: world.app)
    )
    assert result.exit_code == 1
    assert f"site:{mfg2}" in result.output


def test_a_refusal_cannot_be_moved_to_another_sites_chain(world: World) -> None:
    """A site chain's refusal carries its chain's site in its hash: moved (with its place and
    hashes) to another site's chain, it is found."""
    unknown = Din.generate(fin="A1001", year=26, sequence=999_997).barcode
    assert world.scan("op2", unknown, "receive", "MFG-2").status_code == 404
    mfg1, mfg2 = _site_id(world, "MFG-1"), _site_id(world, "MFG-2")
    with UnitOfWork(_factory(world)) as uow:
        (moved,) = uow.session.exec(select(RefusedScan)).all()
    tamper(
        world,
        f"UPDATE refused_scans SET chain_site_id = {mfg1} WHERE id = {moved.id}",
        f"UPDATE chain_heads SET key = 'site:{mfg1}' WHERE key = 'site:{mfg2}'",
    )
    finding = _verify(world).finding
    assert finding is not None
    assert (finding.table, finding.id) == ("refused_scans", moved.id)
    assert "edited" in finding.problem


def test_the_first_refusals_of_a_site_at_once_make_one_chain(world: World) -> None:
    """A site chain's head is made by its first refusal; two at once make it once."""
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def refuse(n: int) -> None:
        barrier.wait()
        client = world.app.test_client()
        response = client.post(
            "/api/v1/scans",
            json={
                "barcode": Din.generate(fin="A1001", year=26, sequence=990_000 + n).barcode,
                "action": "receive",
                "site": "MFG-2",
                "event_id": str(uuid.uuid4()),
            },
            headers=world.headers("op2" if n % 2 else "qa2"),
        )
        answers.append(response.status_code)

    threads = [threading.Thread(target=refuse, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [404] * 4
    assert _heads(world)[f"site:{_site_id(world, 'MFG-2')}"] == 4
    report = _verify(world)
    assert report.ok, report.finding


def test_a_flood_of_refusals_by_one_user_is_limited(app_factory: Any) -> None:
    """Past REFUSAL_RATE_LIMIT a user's refused scans are answered 429 and not kept; another
    user of the same site is not touched; the refused events of a capture count too."""
    world = World.build(app_factory(refusal_rate_limit="5 per hour"))
    unknown = Din.generate(fin="A1001", year=26, sequence=999_996).barcode
    answers = [world.scan("op", unknown, "receive", "MFG-1") for _ in range(7)]
    assert [a.status_code for a in answers] == [404] * 5 + [429] * 2
    assert_problem(answers[5], 429, "rate_limited")
    assert 1 <= int(answers[5].headers["Retry-After"]) <= 3600
    with UnitOfWork(_factory(world)) as uow:
        assert len(uow.session.exec(select(RefusedScan)).all()) == 5
    assert world.scan("qa", unknown, "receive", "MFG-1").status_code == 404
    # a capture of departures the courier cannot make: each refusal counts, past five none
    bag = world.bag_at("pack", "PAT-FLOOD")
    shipment = world.ship([bag["din"]])
    events = []
    for _ in range(7):
        event = _event(0)
        event["epcList"] = [f"{BASE}/shipment/{shipment['barcode']}"]
        event["bizStep"] = "departing"
        event["readPoint"] = {"id": f"{BASE}/site/MFG-1"}  # not where the shipment leaves
        event["eventID"] = f"urn:uuid:{uuid.uuid4()}"
        events.append(event)
    doc = json.loads(capture_of(0))
    doc["epcisBody"]["eventList"] = events
    captured = world.post("courier", "/api/v1/epcis/capture", doc)
    assert captured.status_code == 200, captured.json
    assert [e["code"] for e in captured.json["events"]] == ["wrong_site"] * 5 + ["rate_limited"] * 2


# webhook secrets at rest


def test_a_webhook_secret_is_stored_sealed_and_still_signs(world: World, tmp_path: Any) -> None:
    """The secret is shown once and never stored as it is shown; the worker opens it to sign,
    the receiver verifies with the secret it was shown. A secret kept in clear before sealing
    still signs, and `vein2vein webhooks seal-secrets` seals it."""
    with webhook_receiver() as receiver:
        order = world.enroll()
        unit = world.collect(order["coi"])
        hook = subscribe(world, coi=order["coi"], channel="webhook", target=receiver.url)
        assert hook["secret"].startswith("whsec_")
        with UnitOfWork(_factory(world)) as uow:
            row = uow.session.get(Subscription, hook["id"])
            assert row is not None
            assert row.secret is not None
            stored = row.secret
        assert not stored.startswith("whsec_")
        assert hook["secret"] not in stored
        assert hook["secret"][6:] not in stored
        assert world.scan("aph", unit["barcode"], "verify_label", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["delivered"]
        (delivery,) = receiver.accepted()
        assert delivery.verify(hook["secret"])["data"]["kind"] == "verify_label"
        # a subscription from before sealing: its secret in clear, as it was stored then
        clear = "whsec_" + base64.b64encode(b"k" * 32).decode()
        with UnitOfWork(_factory(world)) as uow:
            legacy = uow.session.get(Subscription, hook["id"])
            assert legacy is not None
            legacy.secret = clear
            uow.session.add(legacy)
            uow.commit()
        assert world.scan("aph", unit["barcode"], "cryopreserve", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["delivered"]
        assert receiver.accepted()[-1].verify(clear)["data"]["kind"] == "cryopreserve"
        result = CliRunner().invoke(
            cli.main, ["webhooks", "seal-secrets"], obj=ScriptInfo(create_app=lambda: world.app)
        )
        assert result.exit_code == 0, result.output
        assert "1 webhook secret(s) sealed" in result.output
        with UnitOfWork(_factory(world)) as uow:
            resealed = uow.session.get(Subscription, hook["id"])
            assert resealed is not None
            assert resealed.secret is not None
            assert not resealed.secret.startswith("whsec_")
        assert world.scan("aph", unit["barcode"], "pack", "APH-1").status_code == 201
        assert deliver_due(world.app) == ["delivered"]
        assert receiver.accepted()[-1].verify(clear)["data"]["kind"] == "pack"


# captured eventIDs: the sender's own, and no replay of what one may not see


def _departure_of(shipment: dict[str, Any], event_id: str) -> dict[str, Any]:
    doc = json.loads(capture_of(0))
    doc["epcisBody"]["eventList"] = [
        {
            "type": "ObjectEvent",
            "eventID": event_id,
            "eventTime": "2026-12-01T10:00:00.000Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": [f"{BASE}/shipment/{shipment['barcode']}"],
            "action": "OBSERVE",
            "bizStep": "departing",
            "readPoint": {"id": f"{BASE}/site/APH-1"},
        }
    ]
    return doc


def _scan_ids(world: World) -> list[str]:
    with UnitOfWork(_factory(world)) as uow:
        return list(uow.session.exec(select(Scan.event_id).order_by(col(Scan.id))).all())


def test_a_captured_event_id_of_another_sender_does_not_replay_as_ones_own(world: World) -> None:
    """A partner's eventID is its own choice (or a hash of the event anyone can compute):
    another network's courier sending the same eventID gets no replay of the first one (which
    told it the bags and their sequences), only its own refusal."""
    bag = world.bag_at("pack", "PAT-EID")
    shipment = world.ship([bag["din"]])
    event_id = f"urn:uuid:{uuid.uuid4()}"
    doc = _departure_of(shipment, event_id)
    first = world.post("courier", "/api/v1/epcis/capture", doc)
    assert first.json["events"][0]["accepted"] is True, first.json
    again = world.post("courier", "/api/v1/epcis/capture", doc)
    assert again.json["events"][0]["replayed"] is True  # the sender's own: a replay
    stranger = world.post("courier2", "/api/v1/epcis/capture", doc)
    (answer,) = stranger.json["events"]
    assert answer["accepted"] is False
    assert "replayed" not in answer
    assert "bags" not in answer
    assert bag["din"] not in json.dumps(stranger.json)
    # a sender who may see the order (its collection site): still not a replay of another's
    neighbour = world.post("aph", "/api/v1/epcis/capture", doc)
    (answer,) = neighbour.json["events"]
    assert answer["accepted"] is False, answer
    assert "replayed" not in answer


def test_an_event_captured_before_ids_were_namespaced_replays_for_its_sender_only(
    world: World,
) -> None:
    bag = world.bag_at("pack", "PAT-OLD")
    shipment = world.ship([bag["din"]])
    event_id = f"urn:uuid:{uuid.uuid4()}"
    doc = _departure_of(shipment, event_id)
    earlier = set(_scan_ids(world))
    assert world.post("courier", "/api/v1/epcis/capture", doc).json["accepted"] == 1
    # as it was recorded before: the scan's id from the eventID alone
    (own,) = [i for i in _scan_ids(world) if i not in earlier]
    before = str(uuid.uuid5(CAPTURE_NAMESPACE, event_id))
    tamper(world, f"UPDATE scans SET event_id = '{before}' WHERE event_id = '{own}'")
    again = world.post("courier", "/api/v1/epcis/capture", doc)
    assert again.json["events"][0]["replayed"] is True, again.json
    stranger = world.post("courier2", "/api/v1/epcis/capture", doc)
    assert stranger.json["events"][0]["accepted"] is False
    assert bag["din"] not in json.dumps(stranger.json)


def test_a_replay_is_answered_only_for_what_the_sender_may_see(world: World) -> None:
    """Visibility is checked before a replay is answered: a scan already under the sender's
    own id whose bags the sender may not see (here forged into place) is not found."""
    bag = world.bag_at("pack", "PAT-SEE")
    shipment = world.ship([bag["din"]])
    event_id = f"urn:uuid:{uuid.uuid4()}"
    doc = _departure_of(shipment, event_id)
    earlier = set(_scan_ids(world))
    assert world.post("courier", "/api/v1/epcis/capture", doc).json["accepted"] == 1
    (recorded,) = [i for i in _scan_ids(world) if i not in earlier]
    cour2 = _site_id(world, "COUR-2")
    theirs = str(uuid.uuid5(CAPTURE_NAMESPACE, f"site:{cour2}\n{event_id}"))
    tamper(world, f"UPDATE scans SET event_id = '{theirs}' WHERE event_id = '{recorded}'")
    stranger = world.post("courier2", "/api/v1/epcis/capture", doc)
    (answer,) = stranger.json["events"]
    assert (answer["accepted"], answer["code"]) == (False, "not_found")
    assert bag["din"] not in json.dumps(stranger.json)


# the EPCIS query in SQL, held to the query as it was: every event of every visible order
# rebuilt and filtered


def _reference(world: World, who: str, query: epcis_query.Query) -> list[dict[str, Any]]:
    uris = Uris(BASE)
    with UnitOfWork(_factory(world)) as uow:
        actor = admin.actor_by_email(uow.session, f"{who}@example.org")
        orders = uow.session.exec(
            select(Order).where(access.order_condition(actor)).order_by(col(Order.id))
        ).all()
        return [
            event
            for order in orders
            for event in epcis.order_events(uow.session, order, uris)
            if query.wants(event)
        ]


def _paged(world: World, who: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Every page of a query through the API, following the Link headers."""
    events: list[dict[str, Any]] = []
    url = "/api/v1/epcis/events?" + urlencode(params)
    pages = 0
    while url:
        response = world.get(who, url)
        assert response.status_code == 200, response.json
        body = response.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        events += body
        pages += 1
        link = response.headers.get("Link")
        assert (link is None) or body, "a next page after an empty one"
        url = ""
        if link:
            target = urlsplit(link.split(";")[0].strip("<>"))
            url = f"{target.path}?{target.query}"
    return events, pages


# on production's database: the other SQLite-and-PostgreSQL query tests cover SQLite (CI time)
@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_the_query_in_sql_answers_what_rebuilding_every_event_answered(world: World) -> None:
    """Every filter, alone and together, for users of each kind of site, a page of one, of
    seven and of a hundred: the same events (every field, eventIDs and errorDeclarations
    included), in the same order, as every visible order's events rebuilt and filtered."""
    from tests.integration.test_epcis import whole_loop

    coi, din = whole_loop(world)
    world.bag_at("receive", "PAT-Q2")  # a second order, elsewhere in its leg
    world.bag_at(  # another network's order
        "collected",
        "PAT-Q3",
        who="care2",
        collection="APH-2",
        manufacturing="MFG-2",
        treatment="TRT-2",
    )
    everything = world.get("care", f"/api/v1/orders/{coi}/epcis").json["epcisBody"]["eventList"]
    middle = everything[len(everything) // 2]["eventTime"]
    batch = next(e["transformationID"] for e in everything if "transformationID" in e)
    inputs = next(e["inputEPCList"] for e in everything if "inputEPCList" in e)
    filters: list[dict[str, str]] = [
        {},
        {"eventType": "TransformationEvent"},
        {"eventType": "ObjectEvent"},
        {"eventType": "AggregationEvent"},
        {"EQ_bizStep": "inspecting|https://ref.gs1.org/cbv/BizStep-shipping"},
        {"EQ_disposition": "in_transit|conformant"},
        {"EQ_disposition": "in_progress"},  # batch status changes in progress, receipts
        {"GE_eventTime": middle},
        {"LT_eventTime": middle},
        {"GE_eventTime": middle, "EQ_bizStep": "arriving|receiving"},
        {"MATCH_epc": f"{BASE}/din/{din}"},
        {"MATCH_epc": f"{BASE}/coi/{coi}"},
        {"MATCH_anyEPC": inputs[0]},
        {"MATCH_anyEPC": f"{BASE}/din/{din}", "eventType": "TransformationEvent"},
        {"MATCH_epc": batch},
        {"MATCH_epc": f"{BASE}/din/A999926999999"},
    ]
    compared = 0
    for who in ("care", "op", "courier", "aph2", "qa"):
        for params in filters:
            query = epcis_query.parse_query(params)
            expected = _reference(world, who, query)
            for size in ("1", "7", "100"):
                if size == "1" and len(expected) > 40:
                    continue  # a page of one through forty-odd events says nothing more
                got, pages = _paged(world, who, {**params, "perPage": size})
                assert got == expected, (who, params, size)
                assert pages == max(1, -(-len(expected) // int(size))), (who, params, size)
                compared += len(got)
    assert compared > 500
    # a page's events carry their corrections' errorDeclaration, as the export does
    corrected = [e for e in _paged(world, "care", {})[0] if "errorDeclaration" in e]
    assert corrected == [e for e in everything if "errorDeclaration" in e] != []


def test_a_page_token_from_the_previous_version_pages_on(world: World) -> None:
    """The token is the last event's (order, sequence) as before: a token given before the
    query moved into SQL still pages on; one forged past a BIGINT is refused, not a 500."""
    world.bag_at("pack", "PAT-TOKEN")
    first, _ = _paged(world, "aph", {})
    assert [e["v2v:sequence"] for e in first] == [0, 1, 2, 3, 4]  # order 1: a fresh database
    token = epcis_query.page_token((1, 2))  # after order 1's record of sequence 2
    rest = world.get("aph", f"/api/v1/epcis/events?nextPageToken={token}").json
    assert rest["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == first[3:]
    huge = epcis_query.page_token((10**30, 1))
    assert world.get("aph", f"/api/v1/epcis/events?nextPageToken={huge}").status_code == 422
