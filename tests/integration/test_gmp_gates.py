"""The GMP gates that cannot be walked around (issue 27), each on both databases:

1. a QA release is one signed act, and a product bag whose batch's release is not signed does
   not leave (409 not_released);
2. a site's signed steps carry their signatures in the act (422 signature_required, 403
   signature_invalid), judged by the rules in force when recorded;
3. a label check reads the printed label: both identifiers, of a label that was printed;
4. batches and shipments can be put right (no dead end without products, a shipment cancelled
   before pickup);
5. condition data cannot be pre-empted, and a leg's window is when its handoffs happened;
6. couriers see and claim carrier-less shipments only by contract;
7. a product's safety settings belong to its owning site's QA, signed, within bounds;
8. two identifiers at the bedside.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import time_machine
from sqlmodel import select

from services.db import UnitOfWork
from services.db.models import (
    Batch,
    CustodyEvent,
    LabelPrint,
    LoginFailure,
    RefusedScan,
    Shipper,
    Signature,
    Unit,
    User,
)
from services.domain.identifiers import Coi, Din
from services.operations import admin, signing
from tests.integration.test_vein_to_vein import STEPS, bc, released_batch, ship_back, status
from tests.world import PASSWORD, World, csrf_token


def _uow(world: World) -> UnitOfWork:
    return UnitOfWork(world.app.extensions["vein2vein"].db.session_factory)


def _engine(world: World) -> sa.Engine:
    return world.app.extensions["vein2vein"].db.engine


def _qc_batch(world: World, patient_ref: str, products: int = 1) -> dict[str, Any]:
    """An order's batch at QC testing with ``products`` product bags."""
    bag = world.bag_at("receive", patient_ref)
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    for step in STEPS:
        assert status(world, "op", code, step).status_code == 200
    filled = world.post("op", f"/api/v1/batches/{code}/products", {"count": products})
    assert filled.status_code == 201, filled.json
    for step in ("cryopreservation", "qc_testing"):
        assert status(world, "op", code, step).status_code == 200
    return {"bag": bag, "code": code, "products": [p["din"] for p in filled.json["products"]]}


def _set_rule(world: World, site: str, step: str, *, witness: bool, required: bool = True) -> None:
    with _uow(world) as uow:
        signing.set_critical_step(
            uow.session,
            site=admin.site_by_code(uow.session, site),
            step=step,
            witness=witness,
            required=required,
        )
        uow.commit()


def _thawed(world: World, patient_ref: str, **enroll: Any) -> dict[str, Any]:
    """A product received, stored and thawed at TRT-1, ready for the bedside."""
    if enroll:
        order = world.enroll(patient_ref, **enroll)
        made = _release_order(world, order)
    else:
        made = released_batch(world, patient_ref)
    (din,) = [p["din"] for p in made["batch"]["products"]]
    shipment = ship_back(world, [din])
    for action in ("receive", "store", "thaw"):
        extra = {"shipment": shipment["barcode"]} if action == "receive" else {}
        assert world.scan("care", bc(din), action, "TRT-1", **extra).status_code == 201
    return {"din": din, "coi": made["bag"]["coi"]}


def _release_order(world: World, order: dict[str, Any]) -> dict[str, Any]:
    """released_batch, for an order already enrolled."""
    unit = world.collect(order["coi"])
    assert world.verify_label("aph", unit).status_code == 201
    for action, who, site in (
        ("cryopreserve", "aph", "APH-1"),
        ("pack", "aph", "APH-1"),
    ):
        assert world.scan(who, unit["barcode"], action, site).status_code == 201
    world.ship([unit["din"]])
    for action, who, site in (
        ("pickup", "courier", "APH-1"),
        ("deliver", "courier", "MFG-1"),
        ("receive", "op", "MFG-1"),
    ):
        assert world.scan(who, unit["barcode"], action, site).status_code == 201
    code = world.post("op", "/api/v1/batches", {"coi": order["coi"]}).json["code"]
    for step in STEPS:
        assert status(world, "op", code, step).status_code == 200
    world.post("op", f"/api/v1/batches/{code}/products", {"count": 1})
    for step in ("cryopreservation", "qc_testing"):
        assert status(world, "op", code, step).status_code == 200
    release = status(world, "qa", code, "released")
    assert release.status_code == 200, release.json
    return {"bag": unit, "batch": release.json}


# 1. release is a signature, and it gates the product


def test_a_release_is_one_signed_act_covering_the_batch_and_its_bags(world: World) -> None:
    made = _qc_batch(world, "PAT-REL", products=2)
    code = made["code"]
    unsigned = status(world, "qa", code, "released", signature=None)
    assert unsigned.status_code == 422, unsigned.json
    assert unsigned.json["code"] == "signature_required"
    wrong = status(world, "qa", code, "released", signature={"password": "not the password"})
    assert wrong.status_code == 403, wrong.json
    assert wrong.json["code"] == "signature_invalid"
    batch = world.get("qa", f"/api/v1/batches/{code}").json
    assert batch["state"] == "qc_testing"  # nothing of the act was recorded
    assert {p["state"] for p in batch["products"]} == {"produced"}
    with _uow(world) as uow:
        qa = uow.session.exec(select(User).where(User.email == "qa@example.org")).one()
        (failure,) = uow.session.exec(
            select(LoginFailure).where(LoginFailure.user_id == qa.id)
        ).all()
        assert failure.failures == 1  # the wrong password counts towards the back-off

    released = status(world, "qa", code, "released")
    assert released.status_code == 200, released.json
    assert released.json["release_signed_at"]
    assert {p["state"] for p in released.json["products"]} == {"released"}
    with _uow(world) as uow:
        rows = uow.session.exec(select(Signature).where(Signature.meaning == "approved")).all()
    # one signature for the decision: approved, by QA, covering both product bags
    assert [(r.meaning, r.signer_email) for r in rows] == [("approved", "qa@example.org")]
    assert sorted(rows[0].covers or []) == sorted(made["products"])
    events = world.get("qa", f"/api/v1/orders/{made['bag']['coi']}/events").json["events"]
    (release,) = [e for e in events if e["batch_status"] == "released"]
    assert (release["signing"], release["signature"]) == ("signed", "signed")
    assert release["signatures"][0]["record_hash"]
    assert world.get("qa", f"/api/v1/orders/{made['bag']['coi']}/audit").json["verified"]


def test_a_product_whose_release_is_not_signed_does_not_leave(world: World) -> None:
    made = released_batch(world, "PAT-GATE", products=2)
    first, second = (p["din"] for p in made["batch"]["products"])
    # a release recorded before signatures came with the act, never signed since
    with _engine(world).begin() as connection:
        connection.execute(sa.update(Batch).values(release_signed_at=None))
    refused = world.scan("op", bc(first), "pack", "MFG-1")
    assert refused.status_code == 409, refused.json
    assert refused.json["code"] == "not_released"
    # the scan station's page asks the same rule
    browser = world.browser("op")
    page = browser.post(
        "/scan",
        data={
            "barcode": bc(first),
            "action": "pack",
            "site": "MFG-1",
            "csrf_token": csrf_token(browser, "/scan"),
        },
        headers={"Accept": "application/json"},
    )
    assert page.status_code == 409, page.get_data(as_text=True)
    assert page.json["code"] == "not_released"
    with _uow(world) as uow:
        unit = uow.session.exec(select(Unit).where(Unit.din == first)).one()
        assert unit.state.value == "released"
        kept = uow.session.exec(select(RefusedScan).where(RefusedScan.code == "not_released"))
        assert kept.first() is not None
    shipped = world.post(
        "op",
        "/api/v1/shipments",
        {"origin": "MFG-1", "destination": "TRT-1", "shipper_id": "LN2-9", "units": [second]},
    )
    assert shipped.status_code in (409, 422), shipped.json
    # once signed, it goes
    with _engine(world).begin() as connection:
        connection.execute(sa.update(Batch).values(release_signed_at=dt.datetime.now(dt.UTC)))
    assert world.scan("op", bc(first), "pack", "MFG-1").status_code == 201


def test_a_product_awaiting_its_release_is_refused_as_not_released(world: World) -> None:
    """Before QA signs, the product is refused for what it is (not released), by the scan
    and the shipment alike, never as a step out of sequence."""
    made = _qc_batch(world, "PAT-WAIT", products=1)
    (din,) = made["products"]
    packed = world.scan("op", bc(din), "pack", "MFG-1")
    assert packed.status_code == 409, packed.json
    assert packed.json["code"] == "not_released"
    shipped = world.post(
        "op",
        "/api/v1/shipments",
        {"origin": "MFG-1", "destination": "TRT-1", "shipper_id": "LN2-8", "units": [din]},
    )
    assert shipped.status_code == 409, shipped.json
    assert shipped.json["code"] == "not_released"


# 2. signed acts, signed in the act


def test_an_infusion_without_its_signature_is_refused_and_recorded_nowhere(world: World) -> None:
    made = _thawed(world, "PAT-SIGN")
    body = {"patient_ref": "PAT-SIGN"}
    unsigned = world.scan("care", bc(made["din"]), "infuse", "TRT-1", sign=False, **body)
    assert unsigned.status_code == 422, unsigned.json
    assert unsigned.json["code"] == "signature_required"
    wrong = world.scan(
        "care", bc(made["din"]), "infuse", "TRT-1", signature={"password": "nope nope nope"}, **body
    )
    assert wrong.status_code == 403, wrong.json
    assert wrong.json["code"] == "signature_invalid"
    with _uow(world) as uow:
        infusions = uow.session.exec(
            select(CustodyEvent).where(CustodyEvent.action == "infuse")
        ).all()
        assert infusions == []
        assert uow.session.exec(select(Unit).where(Unit.din == made["din"])).one().state == "thawed"
    signed = world.scan("care", bc(made["din"]), "infuse", "TRT-1", **body)
    assert signed.status_code == 201, signed.json
    (event,) = signed.json["events"]
    assert [(s["meaning"], s["signer"]) for s in event["signatures"]] == [
        ("performed", "care@example.org")
    ]


def test_a_witnessed_step_needs_a_second_person_of_the_site_in_the_same_request(
    world: World,
) -> None:
    made = _thawed(world, "PAT-WIT")
    _set_rule(world, "TRT-1", "infuse", witness=True)
    world.password("admin")  # a second person of TRT-1
    world.password("care2")  # someone of another site
    base = {"patient_ref": "PAT-WIT", "signature": world.signature("care")}
    barcode = bc(made["din"])
    alone = world.scan("care", barcode, "infuse", "TRT-1", **base)
    assert alone.status_code == 422
    assert alone.json["code"] == "signature_required"

    def infuse(email: str, password: str) -> Any:
        witness = {"email": email, "password": password}
        return world.scan("care", barcode, "infuse", "TRT-1", witness=witness, **base)

    oneself = infuse("care@example.org", PASSWORD)
    assert oneself.status_code == 403
    assert oneself.json["code"] == "signature_invalid"
    assert infuse("care2@example.org", PASSWORD).status_code == 403  # not of this site
    assert infuse("admin@example.org", "x" * 12).status_code == 403  # a wrong password
    witnessed = infuse("admin@example.org", PASSWORD)
    assert witnessed.status_code == 201, witnessed.json
    (event,) = witnessed.json["events"]
    assert [(s["meaning"], s["signer"]) for s in event["signatures"]] == [
        ("performed", "care@example.org"),
        ("witness", "admin@example.org"),
    ]
    timeline = world.get("care", f"/api/v1/orders/{made['coi']}/events").json["events"]
    (infusion,) = [e for e in timeline if e["action"] == "infuse"]
    assert (infusion["signing"], infusion["signature"]) == ("witnessed", "signed")
    # signed in the act: nobody signs it afterwards
    after = world.post(
        "admin",
        f"/api/v1/orders/{made['coi']}/events/{infusion['sequence']}/signatures",
        {"email": "admin@example.org", "password": PASSWORD, "meaning": "witness"},
    )
    assert after.status_code == 409, after.json


def test_an_event_is_judged_by_the_rules_in_force_when_it_was_recorded(world: World) -> None:
    made = _thawed(world, "PAT-RULES")
    assert (
        world.scan("care", bc(made["din"]), "infuse", "TRT-1", patient_ref="PAT-RULES").status_code
        == 201
    )
    _set_rule(world, "TRT-1", "infuse", witness=True)  # a rule added later
    timeline = world.get("care", f"/api/v1/orders/{made['coi']}/events").json["events"]
    (infusion,) = [e for e in timeline if e["action"] == "infuse"]
    assert infusion["signature"] == "signed"


def test_a_receipt_at_manufacturing_is_signed_in_the_act(world: World) -> None:
    bag = world.bag_at("deliver", "PAT-RCV")
    unsigned = world.scan("op", bag["barcode"], "receive", "MFG-1", sign=False)
    assert unsigned.status_code == 422
    assert unsigned.json["code"] == "signature_required"
    signed = world.scan("op", bag["barcode"], "receive", "MFG-1")
    assert signed.status_code == 201, signed.json
    assert signed.json["events"][0]["signatures"][0]["meaning"] == "performed"


def test_a_step_recorded_before_signatures_came_with_the_act_is_signed_by_its_actor(
    world: World,
) -> None:
    """A legacy event (no ``signing`` kept) is signed after the act, as before, but only as
    performed by the person who recorded it; anyone else only as its witness."""
    from services.db.models import Order, Site
    from services.domain.custody import Action, UnitState
    from services.operations import access
    from services.operations.orders import lock_order
    from services.operations.record import append_event

    bag = world.bag_at("deliver", "PAT-OLD")
    with _uow(world) as uow:  # a receipt as the code before this wrote it (no signing kept)
        order = uow.session.exec(select(Order).where(Order.coi == bag["coi"])).one()
        order = lock_order(uow.session, order.id)
        unit = uow.session.exec(select(Unit).where(Unit.din == bag["din"])).one()
        site = admin.site_by_code(uow.session, "MFG-1")
        op = admin.actor_by_email(uow.session, "op@example.org")
        unit.state, unit.custodian_site_id = UnitState.RECEIVED, site.id
        event = append_event(
            uow.session,
            order=order,
            unit=unit,
            action=Action.RECEIVE.value,
            from_state=UnitState.DELIVERED,
            site=site,
            actor=op,
            occurred_at=dt.datetime.now(dt.UTC),
            recorded_at=dt.datetime.now(dt.UTC),
            signing=None,  # type: ignore[arg-type]
        )
        uow.commit()
        sequence = event.sequence
        assert access.can_view_order(uow.session, op, order)
        assert uow.session.get(Site, site.id) is not None
    world.password("qa")

    def sign(who: str, meaning: str) -> Any:
        body = {"email": f"{who}@example.org", "password": world.password(who), "meaning": meaning}
        return world.post(who, f"/api/v1/orders/{bag['coi']}/events/{sequence}/signatures", body)

    someone_else = sign("qa", "verified")
    assert someone_else.status_code == 403, someone_else.json
    assert sign("op", "performed").status_code == 201
    timeline = world.get("op", f"/api/v1/orders/{bag['coi']}/events").json["events"]
    (receipt,) = [e for e in timeline if e["sequence"] == sequence]
    assert (receipt["signing"], receipt["signature"]) == (None, "signed")


# 3. label verification is a check of the printed label


def test_a_label_check_reads_both_identifiers_of_a_printed_label(world: World) -> None:
    unit = world.bag_at("collected", "PAT-LBL")
    other = world.bag_at("collected", "PAT-LBL-OTHER")
    linear = world.scan("aph", unit["barcode"], "verify_label", "APH-1", label=False)
    assert linear.status_code == 422, linear.json
    assert linear.json["code"] == "label_not_verified"
    never_printed = world.scan("aph", unit["label_2d"], "verify_label", "APH-1")
    assert never_printed.status_code == 409, never_printed.json
    assert never_printed.json["code"] == "label_not_printed"
    world.label("aph", unit["din"])
    with _uow(world) as uow:
        (printed,) = uow.session.exec(select(LabelPrint)).all()
        assert (printed.target, printed.user_id is not None) == ("download", True)
    # another patient's label on this bag: the 2-D code names another COI
    crossed = Din.from_value(unit["din"]).barcode + Coi.from_value(other["coi"]).barcode
    wrong = world.scan("aph", crossed, "verify_label", "APH-1")
    assert wrong.status_code == 422, wrong.json
    assert wrong.json["code"] == "coi_mismatch"
    checked = world.scan("aph", unit["label_2d"], "verify_label", "APH-1")
    assert checked.status_code == 201, checked.json
    assert checked.json["to_state"] == "label_verified"


def test_keyboard_entry_needs_both_identifiers_with_their_check_characters(
    world: World,
) -> None:
    unit = world.bag_at("collected", "PAT-KEY")
    world.label("aph", unit["din"])
    din = Din.from_value(unit["din"])
    coi = Coi.from_value(unit["coi"])
    alone = world.scan("aph", din.keyboard_entry, "verify_label", "APH-1")
    assert alone.status_code == 422
    assert alone.json["code"] == "label_not_verified"
    bare = world.scan("aph", din.keyboard_entry, "verify_label", "APH-1", coi=coi.value)
    assert bare.status_code == 422
    assert bare.json["code"] == "label_not_verified"
    typo = world.scan("aph", din.keyboard_entry, "verify_label", "APH-1", coi=coi.value + "0")
    assert typo.status_code == 422
    assert typo.json["code"] == "invalid_identifier"
    keyed = world.scan("aph", din.keyboard_entry, "verify_label", "APH-1", coi=coi.keyboard_entry)
    assert keyed.status_code == 201, keyed.json


# 4. batches and shipments that can be put right


def test_a_batch_leaves_formulation_only_with_product_bags(world: World) -> None:
    bag = world.bag_at("receive", "PAT-EMPTY")
    code = world.post("op", "/api/v1/batches", {"coi": bag["coi"]}).json["code"]
    for step in STEPS:
        assert status(world, "op", code, step).status_code == 200
    empty = status(world, "op", code, "cryopreservation")
    assert empty.status_code == 409
    assert "product bags" in empty.json["detail"]
    assert world.post("op", f"/api/v1/batches/{code}/products", {"count": 1}).status_code == 201
    for step in ("cryopreservation", "qc_testing"):
        assert status(world, "op", code, step).status_code == 200
    # a bag forgotten at formulation is still registered during QC testing, up to release
    late = world.post("op", f"/api/v1/batches/{code}/products", {"count": 1})
    assert late.status_code == 201, late.json
    assert len(late.json["products"]) == 2
    assert status(world, "qa", code, "released").status_code == 200
    after = world.post("op", f"/api/v1/batches/{code}/products", {"count": 1})
    assert after.status_code == 409


def test_a_shipment_opened_by_mistake_is_cancelled_before_pickup(world: World) -> None:
    world.post(
        "aph",
        "/api/v1/shippers",
        {
            "serial": "LN2-7",
            "model": "Elite",
            "hold_time_hours": 240,
            "qualified_until": "2099-01-01T00:00:00Z",
        },
    )
    unit = world.bag_at("pack", "PAT-CANCEL")
    shipment = world.ship([unit["din"]])
    code = shipment["barcode"]
    assert world.post("aph", f"/api/v1/shipments/{code}/cancel", {"reason": ""}).status_code == 422
    assert (
        world.post("aph2", f"/api/v1/shipments/{code}/cancel", {"reason": "x"}).status_code == 404
    )
    assert (
        world.post("care", f"/api/v1/shipments/{code}/cancel", {"reason": "x"}).status_code == 404
    )
    cancelled = world.post(
        "aph", f"/api/v1/shipments/{code}/cancel", {"reason": "opened for the wrong destination"}
    )
    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["state"] == "cancelled"
    assert cancelled.json["cancel_reason"] == "opened for the wrong destination"
    bag = world.get("aph", f"/api/v1/units/{unit['din']}").json
    assert (bag["state"], bag["shipment"]) == ("cryopreserved", None)
    events = world.get("aph", f"/api/v1/units/{unit['din']}/events").json["events"]
    assert events[-1]["action"] == "unpack"
    assert "cancelled before pickup" in events[-1]["reason"]
    with _uow(world) as uow:
        shipper = uow.session.exec(select(Shipper).where(Shipper.serial == "LN2-7")).one()
        assert shipper.status.value == "in_service"  # free again
    # the bag is packed again into a new shipment, and that one, once picked up, stays
    assert world.scan("aph", unit["barcode"], "pack", "APH-1").status_code == 201
    again = world.ship([unit["din"]])
    assert world.scan("courier", again["barcode"], "pickup", "APH-1").status_code == 201
    late = world.post("aph", f"/api/v1/shipments/{again['barcode']}/cancel", {"reason": "x"})
    assert late.status_code == 409
    assert world.get("aph", f"/api/v1/orders/{unit['coi']}/audit").json["verified"]


# 5. condition data that cannot be pre-empted


def _readings(
    world: World, who: str, shipment: str, device: str, values: list[tuple[dt.datetime, float]]
) -> Any:
    return world.post(
        who,
        f"/api/v1/shipments/{shipment}/readings",
        {
            "device_id": device,
            "readings": [{"at": at.isoformat(), "value": v, "unit": "C"} for at, v in values],
        },
    )


def test_a_carriers_cold_file_does_not_pre_empt_the_real_logger(world: World) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=3)
    with time_machine.travel(start, tick=True):
        unit = world.bag_at("pack", "PAT-PRE")
        shipment = world.ship([unit["din"]])["barcode"]
        assert world.scan("courier", shipment, "pickup", "APH-1").status_code == 201
    moments = [start + dt.timedelta(minutes=m) for m in range(10, 60, 2)]
    cold = _readings(world, "courier", shipment, "TAG-1", [(at, -190.0) for at in moments])
    assert cold.status_code == 201, cold.json
    assert cold.json["held"] == []
    # the origin's logger file: the same logger, the same moments, an excursion
    real = _readings(world, "aph", shipment, "TAG-1", [(at, -100.0) for at in moments])
    assert real.status_code == 201, real.json  # kept, not refused
    kinds = {alarm["kind"] for alarm in real.json["alarms"]}
    assert "conflict" in kinds
    assert kinds & {"instant", "continuous", "cumulative"}  # the site's file outranks
    assert real.json["held"] == [unit["din"]]
    readings = world.get("aph", f"/api/v1/shipments/{shipment}/readings").json
    assert len(readings["files"]) == 2
    assert {r["value_c"] for r in readings["readings"]} == {-100.0}  # the origin's values


def test_a_legs_window_opens_when_its_handoff_happened_by_the_scanners_clock(
    world: World,
) -> None:
    unit = world.bag_at("pack", "PAT-WINDOW")
    shipment = world.ship([unit["din"]])["barcode"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    picked = now - dt.timedelta(hours=4)  # scanned at 11:25, sent at 15:25
    taken = world.scan("courier", shipment, "pickup", "APH-1", occurred_at=picked.isoformat())
    assert taken.status_code == 201, taken.json
    hot = [(picked + dt.timedelta(minutes=m), -90.0) for m in range(30, 60, 2)]
    warm = _readings(world, "courier", shipment, "TAG-W", hot)
    assert warm.status_code == 201, warm.json
    assert warm.json["held"] == [unit["din"]], warm.json


# 6. couriers by contract


def test_only_contracted_couriers_see_and_claim_a_shipment_naming_none(world: World) -> None:
    unit = world.bag_at("pack", "PAT-CARRIER")
    shipment = world.ship([unit["din"]], carrier=None)["barcode"]
    # COUR-2 has no contract with APH-1
    assert world.get("courier2", f"/api/v1/shipments/{shipment}").status_code == 404
    assert world.get("courier2", f"/api/v1/orders/{unit['coi']}").status_code == 404
    refused = world.scan("courier2", shipment, "pickup", "APH-1")
    assert refused.status_code == 404, refused.json
    # the contracted courier sees it; with its contract ended, it does not any more
    assert world.get("courier", f"/api/v1/shipments/{shipment}").status_code == 200
    with _uow(world) as uow:
        from services.operations import contracts

        contracts.set_contract(
            uow.session,
            actor=None,
            site=admin.site_by_code(uow.session, "APH-1"),
            courier="COUR-1",
            active=False,
            now=dt.datetime.now(dt.UTC),
        )
        uow.commit()
    assert world.get("courier", f"/api/v1/shipments/{shipment}").status_code == 404
    assert world.scan("courier", shipment, "pickup", "APH-1").status_code == 404


# 7. a product's safety settings have an owner


def test_only_the_owning_sites_qa_changes_a_products_settings_signed_within_bounds(
    world: World,
) -> None:
    signed = {"reason": "validation report VR-12", "signature": world.signature("qa")}
    for who in ("admin", "admin2", "qa2", "op"):
        world.password(who)
        for path, body in (
            ("/api/v1/sla-policies/axi-cel", {"target_days": 29}),
            ("/api/v1/alarm-rules/axi-cel", {"limit_c": -160}),
        ):
            refused = world.post(who, path, {**body, **signed, "signature": world.signature(who)})
            assert refused.status_code == 403, (who, path, refused.json)
    unsigned = world.post("qa", "/api/v1/alarm-rules/axi-cel", {"limit_c": -160, "reason": "x"})
    assert unsigned.status_code == 422
    assert unsigned.json["code"] == "signature_required"
    no_reason = world.post(
        "qa", "/api/v1/alarm-rules/axi-cel", {"limit_c": -160, "signature": signed["signature"]}
    )
    assert no_reason.status_code == 422
    too_warm = world.post("qa", "/api/v1/alarm-rules/axi-cel", {"limit_c": -60, **signed})
    assert too_warm.status_code == 422, too_warm.json
    # axi-cel's label value is not confirmed: no thaw limit beyond the general 30 minutes
    too_long = world.post(
        "qa", "/api/v1/sla-policies/axi-cel", {"limits_hours": {"thaw_to_infusion": 4}, **signed}
    )
    assert too_long.status_code == 422, too_long.json
    rule = world.post("qa", "/api/v1/alarm-rules/axi-cel", {"limit_c": -160, **signed})
    assert rule.status_code == 201, rule.json
    assert rule.json["limit_c"] == -160
    policy = world.post(
        "qa",
        "/api/v1/sla-policies/axi-cel",
        {"limits_hours": {"thaw_to_infusion": 0.25}, **signed},
    )
    assert policy.status_code == 201, policy.json
    with _engine(world).connect() as connection:
        (signer, reason) = connection.execute(
            sa.text("SELECT signer_name, reason FROM alarm_rules ORDER BY version DESC")
        ).first()
        logged = connection.execute(
            sa.text("SELECT action, actor FROM admin_changes WHERE subject = 'axi-cel'")
        ).all()
    assert (signer, reason) == ("qa", "validation report VR-12")
    assert ("alarm rule changed", "qa@example.org") in logged
    assert ("turnaround policy changed", "qa@example.org") in logged


# 8. two identifiers at the bedside


def test_the_bedside_matches_the_reference_and_the_date_of_birth(world: World) -> None:
    made = _thawed(world, "PAT-DOB", birth_date="1971-03-09")
    coi = made["coi"]
    assert world.get("care", f"/api/v1/orders/{coi}").json["patient_birth_date"] == "1971-03-09"
    assert world.get("aph", f"/api/v1/orders/{coi}").json["patient_birth_date"] == "1971-03-09"
    assert world.get("op", f"/api/v1/orders/{coi}").json["patient_birth_date"] is None
    epcis = world.get("op", f"/api/v1/orders/{coi}/epcis").get_data(as_text=True)
    assert "1971-03-09" not in epcis
    barcode = bc(made["din"])
    missing = world.scan("care", barcode, "infuse", "TRT-1", patient_ref="PAT-DOB")
    assert missing.status_code == 422
    wrong = world.scan(
        "care", barcode, "infuse", "TRT-1", patient_ref="PAT-DOB", patient_birth_date="1971-09-03"
    )
    assert wrong.status_code == 422, wrong.json
    assert wrong.json["code"] == "coi_mismatch"
    assert "1971" not in wrong.json["detail"]
    with _uow(world) as uow:
        kept = uow.session.exec(select(RefusedScan).where(RefusedScan.code == "coi_mismatch")).all()
        assert len(kept) == 1
    right = world.scan(
        "care", barcode, "infuse", "TRT-1", patient_ref="PAT-DOB", patient_birth_date="1971-03-09"
    )
    assert right.status_code == 201, right.json
    assert world.get("care", f"/api/v1/orders/{coi}/audit").json["verified"]


def test_a_rewritten_date_of_birth_is_found_by_the_audit(world: World) -> None:
    from services.operations import audit

    order = world.enroll("PAT-SEAL", birth_date="1980-01-01")
    engine = _engine(world)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS orders_identity")
        connection.exec_driver_sql(
            f"UPDATE orders SET patient_birth_date = '1980-02-02' WHERE coi = '{order['coi']}'"
        )
    with _uow(world) as uow:
        finding = audit.verify(uow.session).finding
    assert finding is not None
    assert "date of birth" in finding.problem
