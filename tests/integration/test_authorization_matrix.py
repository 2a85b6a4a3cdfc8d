"""No cross-site reads or writes: every API route x every role of another network.

The routes come from the app's URL map, so a new endpoint without a case here fails the test.
Network A (APH-1, COUR-1, MFG-1, TRT-1) owns an order with a bag on a shipment, a subscription
and a feed item. Every user of network B (APH-2, COUR-2, MFG-2, TRT-2) calls every route against
A's objects: nothing of A's may be read (no COI, DIN or patient reference in any answer) and
nothing may change (A's record is the same before and after).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from sqlmodel import func, select

from services.db import UnitOfWork
from services.db.models import (
    AlarmRuleVersion,
    AlertAcknowledgement,
    ApiToken,
    Batch,
    CapacityDay,
    CourierContract,
    CustodyEvent,
    LabelPrint,
    Notification,
    Order,
    Plan,
    Product,
    ProductProfile,
    RefusedScan,
    Review,
    Shipment,
    Shipper,
    Signature,
    SignatureRule,
    Site,
    SlaPolicy,
    StatusDisclosure,
    StatusLink,
    Subscription,
    TemperatureReading,
    Unit,
    User,
)
from services.domain.custody import Role
from services.domain.identifiers import Din
from services.operations import admin
from tests.world import PASSWORD, USERS, World, csrf_token

Request = Callable[[dict[str, Any]], tuple[str, str, dict[str, Any] | None]]

# (method, rule) -> what a network-B user sends, given network A's objects
CASES: dict[tuple[str, str], Request] = {
    ("GET", "/api/v1/identifiers"): lambda a: (
        "GET",
        f"/api/v1/identifiers?text={a['din']}A",
        None,
    ),
    ("POST", "/api/v1/orders"): lambda a: (
        "POST",
        "/api/v1/orders",
        {
            "patient_ref": "X",
            "product": "axi-cel",
            "collection_site": "APH-1",
            "manufacturing_site": "MFG-1",
            "treatment_site": "TRT-1",
        },
    ),
    ("GET", "/api/v1/orders/<coi>"): lambda a: ("GET", f"/api/v1/orders/{a['coi']}", None),
    ("GET", "/api/v1/orders/<coi>/events"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/events",
        None,
    ),
    ("GET", "/api/v1/orders/<coi>/fhir"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/fhir",
        None,
    ),
    # patient record merges (issue 31): network B's sites merge their own references only
    ("POST", "/api/v1/patient-merges"): lambda a: (
        "POST",
        "/api/v1/patient-merges",
        {"old_ref": "PAT-SECRET-A", "new_ref": "PAT-HIJACKED"},
    ),
    ("POST", "/api/v1/patient-merges/hl7"): lambda a: (
        "POST",
        "/api/v1/patient-merges/hl7",
        None,
    ),
    ("GET", "/api/v1/orders/<coi>/audit"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/audit",
        None,
    ),
    ("POST", "/api/v1/orders/<coi>/corrections"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/corrections",
        {"sequence": 1, "reason": "rewrite history", "signature": {"password": PASSWORD}},
    ),
    ("POST", "/api/v1/orders/<coi>/events/<int:sequence>/signatures"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi2']}/events/6/signatures",
        {"email": "x@example.org", "password": "whatever it is", "meaning": "approved"},
    ),
    ("POST", "/api/v1/batches"): lambda a: ("POST", "/api/v1/batches", {"coi": a["coi2"]}),
    ("GET", "/api/v1/batches"): lambda a: ("GET", "/api/v1/batches", None),
    ("GET", "/api/v1/batches/<batch>"): lambda a: ("GET", f"/api/v1/batches/{a['batch']}", None),
    ("POST", "/api/v1/batches/<batch>/status"): lambda a: (
        "POST",
        f"/api/v1/batches/{a['batch']}/status",
        {"status": "failed", "reason": "sabotage"},
    ),
    ("POST", "/api/v1/batches/<batch>/products"): lambda a: (
        "POST",
        f"/api/v1/batches/{a['batch']}/products",
        {"count": 1},
    ),
    ("POST", "/api/v1/shipments/<shipment>/reconcile"): lambda a: (
        "POST",
        f"/api/v1/shipments/{a['shipment']}/reconcile",
        {},
    ),
    ("POST", "/api/v1/orders/<coi>/collections"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/collections",
        {},
    ),
    ("GET", "/api/v1/orders/<coi>/labels"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/labels",
        None,
    ),
    ("GET", "/api/v1/units/<din>"): lambda a: ("GET", f"/api/v1/units/{a['din']}", None),
    ("GET", "/api/v1/units/<din>/events"): lambda a: (
        "GET",
        f"/api/v1/units/{a['din']}/events",
        None,
    ),
    ("GET", "/api/v1/units/<din>/label"): lambda a: (
        "GET",
        f"/api/v1/units/{a['din']}/label",
        None,
    ),
    ("POST", "/api/v1/scans"): lambda a: (
        "POST",
        "/api/v1/scans",
        {"barcode": a["barcode"], "action": a["next_action"], "site": a["next_site"]},
    ),
    ("POST", "/api/v1/shipments"): lambda a: (
        "POST",
        "/api/v1/shipments",
        {"origin": "APH-1", "destination": "MFG-1", "shipper_id": "X", "units": [a["din"]]},
    ),
    ("GET", "/api/v1/shipments/<shipment>"): lambda a: (
        "GET",
        f"/api/v1/shipments/{a['shipment']}",
        None,
    ),
    ("POST", "/api/v1/subscriptions"): lambda a: (
        "POST",
        "/api/v1/subscriptions",
        {"coi": a["coi"], "channel": "email", "target": "spy@example.org"},
    ),
    ("GET", "/api/v1/subscriptions"): lambda a: ("GET", "/api/v1/subscriptions", None),
    ("DELETE", "/api/v1/subscriptions/<int:subscription_id>"): lambda a: (
        "DELETE",
        f"/api/v1/subscriptions/{a['subscription']}",
        None,
    ),
    ("GET", "/api/v1/tokens"): lambda a: ("GET", "/api/v1/tokens", None),
    ("DELETE", "/api/v1/tokens/<int:token_id>"): lambda a: (
        "DELETE",
        f"/api/v1/tokens/{a['token']}",
        None,
    ),
    ("GET", "/api/v1/notifications"): lambda a: ("GET", "/api/v1/notifications", None),
    ("POST", "/api/v1/notifications/<int:notification_id>/read"): lambda a: (
        "POST",
        f"/api/v1/notifications/{a['feed_item']}/read",
        None,
    ),
    ("GET", "/api/v1/delays"): lambda a: ("GET", "/api/v1/delays", None),
    ("GET", "/api/v1/turnaround"): lambda a: (
        "GET",
        "/api/v1/turnaround?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z",
        None,
    ),
    ("GET", "/api/v1/sla-policies/<product>"): lambda a: (
        "GET",
        "/api/v1/sla-policies/axi-cel",
        None,
    ),
    ("POST", "/api/v1/sla-policies/<product>"): lambda a: (
        "POST",
        "/api/v1/sla-policies/axi-cel",
        {"target_days": 29},
    ),
    # the vein-to-vein plan (issue 30): A's capacity, A's plan, A's product's profile
    ("POST", "/api/v1/capacity"): lambda a: (
        "POST",
        "/api/v1/capacity",
        {"site": "MFG-1", "product": "axi-cel", "date": a["slot_day"], "slots": 0},
    ),
    ("GET", "/api/v1/capacity"): lambda a: (
        "GET",
        f"/api/v1/capacity?site=MFG-1&product=axi-cel&from={a['slot_day']}&to={a['slot_day']}",
        None,
    ),
    ("GET", "/api/v1/orders/<coi>/plan"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/plan",
        None,
    ),
    ("POST", "/api/v1/orders/<coi>/plan"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi2']}/plan",
        {"apheresis_on": a["today"]},
    ),
    ("POST", "/api/v1/orders/<coi>/plan/confirm"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/plan/confirm",
        {},
    ),
    ("POST", "/api/v1/orders/<coi>/plan/move"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/plan/move",
        {"manufacturing_start_on": a["slot_day"]},
    ),
    ("POST", "/api/v1/orders/<coi>/plan/cancel"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/plan/cancel",
        {"reason": "sabotage"},
    ),
    ("POST", "/api/v1/orders/<coi>/lymphodepletion"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/lymphodepletion",
        {"started_on": a["today"], "override_reason": "sabotage"},
    ),
    ("POST", "/api/v1/orders/<coi>/not-infused"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/not-infused",
        {"reason": "sabotage", "fate": "destroy"},
    ),
    ("GET", "/api/v1/products/<product>/profile"): lambda a: (
        "GET",
        "/api/v1/products/axi-cel/profile",
        None,
    ),
    ("POST", "/api/v1/products/<product>/profile"): lambda a: (
        "POST",
        "/api/v1/products/axi-cel/profile",
        {"values": {"ld_days": 1}, "reason": "sabotage", "signature": {"password": PASSWORD}},
    ),
    # the chain of condition (issue 15)
    ("GET", "/api/v1/shippers"): lambda a: ("GET", "/api/v1/shippers", None),
    ("POST", "/api/v1/shippers"): lambda a: (
        "POST",
        "/api/v1/shippers",
        {
            "serial": a["shipper"],
            "model": "Spy",
            "hold_time_hours": 1,
            "qualified_until": "2099-01-01T00:00:00Z",
        },
    ),
    ("GET", "/api/v1/shippers/<serial>"): lambda a: (
        "GET",
        f"/api/v1/shippers/{a['shipper']}",
        None,
    ),
    ("POST", "/api/v1/shippers/<serial>/changes"): lambda a: (
        "POST",
        f"/api/v1/shippers/{a['shipper']}/changes",
        {"status": "retired", "reason": "sabotage"},
    ),
    ("POST", "/api/v1/shipments/<shipment>/readings"): lambda a: (
        "POST",
        f"/api/v1/shipments/{a['shipment']}/readings",
        {"device_id": "X", "readings": [{"at": a["reading_at"], "value": 30, "unit": "C"}]},
    ),
    ("POST", "/api/v1/shipments/<shipment>/readings/csv"): lambda a: (
        "POST",
        f"/api/v1/shipments/{a['shipment']}/readings/csv?device_id=X",
        None,
    ),
    ("GET", "/api/v1/shipments/<shipment>/readings"): lambda a: (
        "GET",
        f"/api/v1/shipments/{a['shipment']}/readings",
        None,
    ),
    ("GET", "/api/v1/shipments/<shipment>/readings/files/<sha256>"): lambda a: (
        "GET",
        f"/api/v1/shipments/{a['shipment']}/readings/files/{a['logger_file']}",
        None,
    ),
    ("GET", "/api/v1/alarm-rules/<product>"): lambda a: (
        "GET",
        "/api/v1/alarm-rules/axi-cel",
        None,
    ),
    ("POST", "/api/v1/alarm-rules/<product>"): lambda a: (
        "POST",
        "/api/v1/alarm-rules/axi-cel",
        {"gap_minutes": 20},
    ),
    ("POST", "/api/v1/units/<din>/disposition"): lambda a: (
        "POST",
        f"/api/v1/units/{a['held']}/disposition",
        {"decision": "reject", "reason": "x", "email": "x@example.org", "password": "x"},
    ),
    # EPCIS (issue 16)
    ("GET", "/api/v1/orders/<coi>/epcis"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/epcis",
        None,
    ),
    ("GET", "/api/v1/epcis/events"): lambda a: ("GET", "/api/v1/epcis/events?perPage=1000", None),
    ("GET", "/api/v1/epcis/events/<path:event_id>"): lambda a: (
        "GET",
        f"/api/v1/epcis/events/{a['epcis_event']}",
        None,
    ),
    ("POST", "/api/v1/epcis/capture"): lambda a: (
        "POST",
        "/api/v1/epcis/capture",
        {
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-12-01T10:00:00.000Z",
            "epcisBody": {
                "eventList": [
                    {
                        "type": "ObjectEvent",
                        "eventTime": a["reading_at"],
                        "eventTimeZoneOffset": "+00:00",
                        "epcList": [f"https://vein2vein.example/id/shipment/{a['shipment']}"],
                        "action": "OBSERVE",
                        "bizStep": "departing",
                        "readPoint": {"id": "https://vein2vein.example/id/site/APH-1"},
                    }
                ]
            },
        },
    ),
    # the record as documents (issue 17)
    ("GET", "/api/v1/orders/<coi>/report.pdf"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/report.pdf",
        None,
    ),
    ("GET", "/api/v1/orders/<coi>/evidence"): lambda a: (
        "GET",
        f"/api/v1/orders/{a['coi']}/evidence",
        None,
    ),
    # the installation's public keys: published to everyone (they name no order)
    ("GET", "/api/v1/keys"): lambda a: ("GET", "/api/v1/keys", None),
    # GMP gates (issue 27)
    ("POST", "/api/v1/shipments/<shipment>/cancel"): lambda a: (
        "POST",
        f"/api/v1/shipments/{a['shipment']}/cancel",
        {"reason": "sabotage"},
    ),
    # the family's status page (issue 32): links and news are the treatment site's care team's
    ("POST", "/api/v1/orders/<coi>/status-links"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['coi']}/status-links",
        {"expires_in_days": 180},
    ),
    ("DELETE", "/api/v1/orders/<coi>/status-links/<int:link_id>"): lambda a: (
        "DELETE",
        f"/api/v1/orders/{a['coi']}/status-links/{a['status_link']}",
        None,
    ),
    ("POST", "/api/v1/orders/<coi>/status-news/<int:sequence>/discussed"): lambda a: (
        "POST",
        f"/api/v1/orders/{a['held_coi']}/status-news/{a['hold_sequence']}/discussed",
        {"reason": "sabotage"},
    ),
}
# answers event by event (200 with each refused): what matters is that nothing of A's changes
PER_ITEM = {("POST", "/api/v1/epcis/capture")}
# a product's settings are readable by all and changed only by QA of its owning site (MFG-1
# owns axi-cel): nothing of network B's may change them
GLOBAL_WRITES: set[tuple[str, str]] = {
    # a patient merge re-links the caller's own site's orders only: B's merge of a reference
    # A's patient carries succeeds with nothing re-linked, and A's record stays as it was
    ("POST", "/api/v1/patient-merges"),
}

# every user of network B, one of each role
NETWORK_B = sorted(short for short, (_role, site) in USERS.items() if site.endswith("-2"))


def api_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def a_record(world: World, coi: str) -> tuple[Any, ...]:
    """Everything of A's that a write could change."""
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        session = uow.session
        order = session.exec(select(Order).where(Order.coi == coi)).one()
        return (
            session.exec(
                select(func.count())
                .select_from(CustodyEvent)
                .where(CustodyEvent.order_id == order.id)
            ).one(),
            session.exec(
                select(func.count()).select_from(Unit).where(Unit.order_id == order.id)
            ).one(),
            tuple(u.state for u in session.exec(select(Unit).where(Unit.order_id == order.id))),
            session.exec(select(func.count()).select_from(Shipment)).one(),
            tuple((s.id, s.active) for s in session.exec(select(Subscription))),
            session.exec(select(func.count()).select_from(Order)).one(),
            # network A's tokens (network B's users may make tokens of their own)
            tuple(
                (t.id, t.revoked_at)
                for t, email in session.exec(
                    select(ApiToken, User.email).join(User, User.id == ApiToken.user_id)  # type: ignore[arg-type]
                )
                if not email.split("@")[0].endswith("2")
            ),
            tuple((b.id, b.state) for b in session.exec(select(Batch))),
            tuple((s.id, s.reconciled_at, s.state) for s in session.exec(select(Shipment))),
            # a product's settings, its owner, the sites' courier contracts
            session.exec(select(func.count()).select_from(SlaPolicy)).one(),
            session.exec(select(func.count()).select_from(AlarmRuleVersion)).one(),
            tuple((p.code, p.owner_site_id) for p in session.exec(select(Product))),
            tuple(
                (c.site_id, c.courier_site_id, c.ended_at)
                for c in session.exec(select(CourierContract))
            ),
            session.exec(select(func.count()).select_from(CustodyEvent)).one(),
            session.exec(select(func.count()).select_from(Signature)).one(),
            session.exec(select(func.count()).select_from(LabelPrint)).one(),
            session.exec(select(func.count()).select_from(Review)).one(),
            tuple((s.serial, s.status) for s in session.exec(select(Shipper))),
            session.exec(select(func.count()).select_from(TemperatureReading)).one(),
            tuple(
                (u.id, u.role, u.active, u.session_epoch)
                for u in session.exec(select(User))
                if u.email.split("@")[0] in ("care", "aph", "op", "qa", "admin", "courier")
            ),
            # network A's sites (their clocks, names, FINs), their people, signing rules and
            # acknowledged alerts (issue 29)
            tuple(
                (s.code, s.name, s.time_zone, s.fin, s.managed_by_site_id)
                for s in session.exec(select(Site).order_by(Site.id))  # type: ignore[arg-type]
                if s.code.endswith("-1")
            ),
            tuple(
                (u.email, u.site_id, u.role)
                for u in session.exec(select(User).order_by(User.id))  # type: ignore[arg-type]
                if u.site_id in _site_ids(session, "-1")
            ),
            tuple(
                (r.site_id, r.step, r.witness_required)
                for r in session.exec(select(SignatureRule))
                if r.site_id in _site_ids(session, "-1")
            ),
            session.exec(select(func.count()).select_from(AlertAcknowledgement)).one(),
            # the family's status links and the news marked discussed with them (issue 32)
            tuple(
                (link.id, link.revoked_at, link.expires_at)
                for link in session.exec(select(StatusLink).order_by(StatusLink.id))  # type: ignore[arg-type]
            ),
            session.exec(select(func.count()).select_from(StatusDisclosure)).one(),
            # the plans, the capacity and the product profiles (issue 30)
            tuple(
                (p.order_id, p.state, p.capacity_day_id, p.moves, p.ld_started_on, p.reason)
                for p in session.exec(select(Plan).order_by(Plan.id))  # type: ignore[arg-type]
            ),
            tuple(
                (c.site_id, c.product, c.day, c.slots, c.booked)
                for c in session.exec(select(CapacityDay).order_by(CapacityDay.id))  # type: ignore[arg-type]
                if c.site_id in _site_ids(session, "-1")
            ),
            session.exec(select(func.count()).select_from(ProductProfile)).one(),
            (order.has_plan, order.infuse_from, order.infuse_to),
        )


def _site_ids(session: Any, suffix: str) -> set[int | None]:
    return {s.id for s in session.exec(select(Site)) if s.code.endswith(suffix)}


# the pages, as a signed-in user of network B opens them (forms are posted with their token)
PAGE_CASES: dict[tuple[str, str], Request] = {
    ("GET", "/"): lambda a: ("GET", "/", None),
    ("GET", "/login"): lambda a: ("GET", "/login", None),
    ("POST", "/login"): lambda a: ("POST", "/login", {"email": "care@example.org"}),
    ("POST", "/logout"): lambda a: ("POST", "/logout", {}),
    ("GET", "/scan"): lambda a: ("GET", "/scan", None),
    ("POST", "/scan"): lambda a: (
        "POST",
        "/scan",
        {"barcode": a["barcode"], "action": "pickup", "site": "APH-1"},
    ),
    ("GET", "/orders/<coi>"): lambda a: ("GET", f"/orders/{a['coi']}", None),
    # the vein-to-vein plan (issue 30)
    ("GET", "/capacity"): lambda a: ("GET", "/capacity?site=MFG-1", None),
    ("POST", "/capacity"): lambda a: (
        "POST",
        "/capacity",
        {"product": "axi-cel", "first_day": a["slot_day"], "days": "1", "slots": "0"},
    ),
    ("GET", "/orders/<coi>/plan"): lambda a: ("GET", f"/orders/{a['coi']}/plan", None),
    ("POST", "/orders/<coi>/plan"): lambda a: (
        "POST",
        f"/orders/{a['coi2']}/plan",
        {"apheresis_on": a["today"]},
    ),
    ("POST", "/orders/<coi>/plan/confirm"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/plan/confirm",
        {},
    ),
    ("POST", "/orders/<coi>/plan/move"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/plan/move",
        {"manufacturing_start_on": a["slot_day"]},
    ),
    ("POST", "/orders/<coi>/plan/cancel"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/plan/cancel",
        {"reason": "sabotage"},
    ),
    ("GET", "/week"): lambda a: ("GET", "/week", None),
    ("GET", "/orders/<coi>/report.pdf"): lambda a: ("GET", f"/orders/{a['coi']}/report.pdf", None),
    ("GET", "/orders/<coi>/evidence.json"): lambda a: (
        "GET",
        f"/orders/{a['coi']}/evidence.json",
        None,
    ),
    ("POST", "/orders/<coi>/events/<int:sequence>/sign"): lambda a: (
        "POST",
        f"/orders/{a['coi2']}/events/6/sign",
        {"email": "x@example.org", "password": "whatever it is", "meaning": "approved"},
    ),
    ("POST", "/orders/<coi>/corrections"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/corrections",
        {"sequence": "1", "reason": "rewrite history", "password": PASSWORD},
    ),
    ("GET", "/units/<din>/label.<fmt>"): lambda a: ("GET", f"/units/{a['din']}/label.zpl", None),
    ("GET", "/batches"): lambda a: ("GET", "/batches", None),
    ("POST", "/batches/<batch>/status"): lambda a: (
        "POST",
        f"/batches/{a['batch']}/status",
        {"status": "failed", "reason": "sabotage"},
    ),
    ("GET", "/tower"): lambda a: ("GET", "/tower", None),
    # every role's day (issue 14): each page and form against network A's objects
    ("GET", "/orders/new"): lambda a: ("GET", "/orders/new", None),
    ("POST", "/orders/new"): lambda a: (
        "POST",
        "/orders/new",
        {
            "patient_ref": "X",
            "product": "axi-cel",
            "collection_site": "APH-1",
            "manufacturing_site": "MFG-1",
            "treatment_site": "TRT-1",
        },
    ),
    ("POST", "/orders/<coi>/collections"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/collections",
        {"volume_ml": "100"},
    ),
    ("POST", "/orders/<coi>/batch"): lambda a: ("POST", f"/orders/{a['coi2']}/batch", {}),
    ("POST", "/orders/<coi>/notify"): lambda a: ("POST", f"/orders/{a['coi']}/notify", {}),
    ("POST", "/units/<din>/print"): lambda a: (
        "POST",
        f"/units/{a['din']}/print",
        {"target": "pdf", "reason": "x"},
    ),
    ("GET", "/shipments"): lambda a: ("GET", "/shipments", None),
    ("POST", "/shipments"): lambda a: ("POST", "/shipments", {"barcode": a["shipment"]}),
    ("GET", "/shipments/new"): lambda a: ("GET", "/shipments/new", None),
    ("POST", "/shipments/new"): lambda a: (
        "POST",
        "/shipments/new",
        {"destination": "MFG-1", "shipper_id": "LN2-X"},
    ),
    ("GET", "/shipments/<code>/pack"): lambda a: ("GET", f"/shipments/{a['shipment']}/pack", None),
    ("POST", "/shipments/<code>/pack"): lambda a: (
        "POST",
        f"/shipments/{a['shipment']}/pack",
        {"barcode": a["barcode"]},
    ),
    ("GET", "/shipments/<code>/receive"): lambda a: (
        "GET",
        f"/shipments/{a['shipment']}/receive",
        None,
    ),
    ("POST", "/shipments/<code>/receive"): lambda a: (
        "POST",
        f"/shipments/{a['shipment']}/receive",
        {"barcode": a["barcode"]},
    ),
    ("POST", "/shipments/<code>/reconcile"): lambda a: (
        "POST",
        f"/shipments/{a['shipment']}/reconcile",
        {},
    ),
    ("GET", "/shipments/<code>/label.<fmt>"): lambda a: (
        "GET",
        f"/shipments/{a['shipment']}/label.pdf",
        None,
    ),
    ("POST", "/shipments/<code>/print"): lambda a: (
        "POST",
        f"/shipments/{a['shipment']}/print",
        {"target": "pdf", "reason": "x"},
    ),
    ("GET", "/alerts"): lambda a: ("GET", f"/alerts?coi={a['coi']}", None),
    ("POST", "/alerts/<int:notification_id>/read"): lambda a: (
        "POST",
        f"/alerts/{a['feed_item']}/read",
        {},
    ),
    ("POST", "/alerts/read"): lambda a: ("POST", "/alerts/read", {}),
    ("GET", "/subscriptions"): lambda a: ("GET", "/subscriptions", None),
    ("POST", "/subscriptions"): lambda a: (
        "POST",
        "/subscriptions",
        {"scope": "order", "coi": a["coi"], "channel": "email", "target": "spy@example.org"},
    ),
    ("POST", "/subscriptions/<int:subscription_id>/stop"): lambda a: (
        "POST",
        f"/subscriptions/{a['subscription']}/stop",
        {},
    ),
    ("GET", "/bedside"): lambda a: ("GET", "/bedside", None),
    ("POST", "/bedside"): lambda a: (
        "POST",
        "/bedside",
        {"patient_ref": "PAT-SECRET-B", "barcode": a["product_barcode"]},
    ),
    ("POST", "/bedside/infuse"): lambda a: (
        "POST",
        "/bedside/infuse",
        {"patient_ref": "PAT-SECRET-B", "barcode": a["product_barcode"], "password": "x"},
    ),
    ("GET", "/review"): lambda a: ("GET", "/review", None),
    ("POST", "/review/<source>/<int:source_id>"): lambda a: (
        "POST",
        f"/review/refused_scan/{a['refusal']}",
        {"outcome": "no_action", "note": "x", "email": "x@example.org", "password": "x"},
    ),
    ("GET", "/admin"): lambda a: ("GET", "/admin", None),
    ("POST", "/admin/users"): lambda a: (
        "POST",
        "/admin/users",
        {"email": "new@example.org", "name": "New", "role": "care_team", "site": "TRT-1"},
    ),
    ("POST", "/admin/users/<int:user_id>"): lambda a: (
        "POST",
        f"/admin/users/{a['user']}",
        {"change": "deactivate"},
    ),
    ("POST", "/admin/tokens/<int:token_id>/revoke"): lambda a: (
        "POST",
        f"/admin/tokens/{a['token']}/revoke",
        {},
    ),
    ("POST", "/admin/site"): lambda a: (
        "POST",
        "/admin/site",
        {"step": "receive", "required": "no", "witness": "no", "site": "MFG-1"},
    ),
    ("POST", "/admin/contracts"): lambda a: (
        "POST",
        "/admin/contracts",
        {"courier": "COUR-1", "change": "end", "site": "APH-1"},
    ),
    # each role's day in local time (issue 29): sites from the pages, triaged alerts, bulk
    # review, the station's next step
    ("POST", "/admin/sites"): lambda a: (
        "POST",
        "/admin/sites",
        {"code": "TRT-1", "kind": "treatment", "name": "Twin", "time_zone": "Asia/Tokyo"},
    ),
    ("POST", "/admin/sites/<code>"): lambda a: (
        "POST",
        "/admin/sites/TRT-1",
        {"name": "Hijacked", "time_zone": "Asia/Tokyo"},
    ),
    ("POST", "/alerts/<int:notification_id>/acknowledge"): lambda a: (
        "POST",
        f"/alerts/{a['critical_item']}/acknowledge",
        {},
    ),
    ("POST", "/review/many"): lambda a: (
        "POST",
        "/review/many",
        {
            "items": f"refused_scan:{a['refusal']}",
            "note": "x",
            "email": "x@example.org",
            "password": "x",
        },
    ),
    ("GET", "/scan/next"): lambda a: ("GET", f"/scan/next?barcode={a['barcode']}", None),
    ("POST", "/batches/<batch>/labels"): lambda a: (
        "POST",
        f"/batches/{a['batch']}/labels",
        {"reason": "x"},
    ),
    ("GET", "/batches/<batch>/labels.pdf"): lambda a: (
        "GET",
        f"/batches/{a['batch']}/labels.pdf",
        None,
    ),
    ("GET", "/account"): lambda a: ("GET", "/account", None),
    ("GET", "/account/password"): lambda a: ("GET", "/account/password", None),
    ("POST", "/account/password"): lambda a: (
        "POST",
        "/account/password",
        {"current_password": "x", "new_password": "y", "confirm_password": "y"},
    ),
    ("POST", "/account/sign-out-everywhere"): lambda a: (
        "POST",
        "/account/sign-out-everywhere",
        {},
    ),
    ("POST", "/account/tokens"): lambda a: ("POST", "/account/tokens", {"name": "mine"}),
    ("POST", "/account/tokens/<int:token_id>/revoke"): lambda a: (
        "POST",
        f"/account/tokens/{a['token']}/revoke",
        {},
    ),
    # the chain of condition (issue 15)
    ("GET", "/shippers"): lambda a: ("GET", "/shippers", None),
    ("POST", "/shippers"): lambda a: (
        "POST",
        "/shippers",
        {
            "serial": a["shipper"],
            "model": "Spy",
            "hold_time_hours": "1",
            "qualified_until": "2099-01-01",
        },
    ),
    ("POST", "/shippers/<serial>"): lambda a: (
        "POST",
        f"/shippers/{a['shipper']}",
        {"status": "retired", "reason": "sabotage"},
    ),
    ("GET", "/shipments/<code>/condition"): lambda a: (
        "GET",
        f"/shipments/{a['shipment']}/condition",
        None,
    ),
    ("POST", "/shipments/<code>/condition"): lambda a: (
        "POST",
        f"/shipments/{a['shipment']}/condition",
        {"device_id": "X"},
    ),
    ("GET", "/shipments/<code>/readings/<sha256>"): lambda a: (
        "GET",
        f"/shipments/{a['shipment']}/readings/{a['logger_file']}",
        None,
    ),
    ("GET", "/holds"): lambda a: ("GET", "/holds", None),
    # GMP gates (issue 27): the batch page, QA's release, products, a cancellation
    ("GET", "/batches/<batch>"): lambda a: ("GET", f"/batches/{a['batch']}", None),
    ("POST", "/batches/<batch>/products"): lambda a: (
        "POST",
        f"/batches/{a['batch']}/products",
        {"count": "1"},
    ),
    ("GET", "/batches/<batch>/release"): lambda a: ("GET", f"/batches/{a['batch']}/release", None),
    ("POST", "/batches/<batch>/release"): lambda a: (
        "POST",
        f"/batches/{a['batch']}/release",
        {"password": "whatever it is"},
    ),
    ("POST", "/shipments/<code>/cancel"): lambda a: (
        "POST",
        f"/shipments/{a['shipment']}/cancel",
        {"reason": "sabotage"},
    ),
    ("GET", "/products"): lambda a: ("GET", "/products", None),
    ("GET", "/products/<code>"): lambda a: ("GET", "/products/axi-cel", None),
    ("POST", "/products/<code>/policy"): lambda a: (
        "POST",
        "/products/axi-cel/policy",
        {"target_days": "29", "reason": "x", "password": "whatever it is"},
    ),
    ("POST", "/products/<code>/alarm-rule"): lambda a: (
        "POST",
        "/products/axi-cel/alarm-rule",
        {"limit_c": "-160", "reason": "x", "password": "whatever it is"},
    ),
    ("POST", "/holds/<din>"): lambda a: (
        "POST",
        f"/holds/{a['held']}",
        {"decision": "reject", "reason": "x", "email": "x@example.org", "password": "x"},
    ),
    # the family's status page (issue 32): the care team's forms, and the family's own pages,
    # which open with a link's token only (an unknown one, or a forged stop link, is a 404)
    ("POST", "/orders/<coi>/status-links"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/status-links",
        {"expires_in_days": "180"},
    ),
    ("POST", "/orders/<coi>/status-links/<int:link_id>/revoke"): lambda a: (
        "POST",
        f"/orders/{a['coi']}/status-links/{a['status_link']}/revoke",
        {},
    ),
    ("POST", "/orders/<coi>/status-news/<int:sequence>/discussed"): lambda a: (
        "POST",
        f"/orders/{a['held_coi']}/status-news/{a['hold_sequence']}/discussed",
        {"reason": "sabotage"},
    ),
    ("GET", "/status/<token>"): lambda a: ("GET", f"/status/{'A' * 43}", None),
    ("POST", "/status/<token>/emails"): lambda a: (
        "POST",
        f"/status/{'A' * 43}/emails",
        {"emails": "off"},
    ),
    ("GET", "/status/stop/<int:subscription_id>/<signature>"): lambda a: (
        "GET",
        f"/status/stop/{a['family_subscription']}/{'0' * 40}",
        None,
    ),
    ("POST", "/status/stop/<int:subscription_id>/<signature>"): lambda a: (
        "POST",
        f"/status/stop/{a['family_subscription']}/{'0' * 40}",
        {},
    ),
    # into the hospital's systems (issue 31): single sign-on and its signatures, a site's
    # passwords turned off
    ("GET", "/sso/login"): lambda a: ("GET", "/sso/login", None),
    ("GET", "/sso/callback"): lambda a: ("GET", "/sso/callback?state=x&code=y", None),
    ("POST", "/sso/sign"): lambda a: (
        "POST",
        "/sso/sign",
        {"role": "performer", "purpose": "/bedside/infuse"},
    ),
    ("POST", "/admin/sites/<code>/passwords"): lambda a: (
        "POST",
        "/admin/sites/TRT-1/passwords",
        {"local_passwords": "off"},
    ),
}
PUBLIC_RULES = {"/static/<path:filename>"}


def page_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith("/api/v1/") and rule.rule not in PUBLIC_RULES
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_route_has_a_case(app: Any) -> None:
    assert api_routes(app) == set(CASES), "add the new route to CASES"
    assert page_routes(app) == set(PAGE_CASES), "add the new page to PAGE_CASES"


def test_no_user_of_another_network_reads_or_changes_anything(world: World) -> None:
    assert {USERS[short][0] for short in NETWORK_B} == set(Role)
    bag = world.bag_at("pack", "PAT-SECRET-A")
    shipment = world.ship([bag["din"]])
    # A's shipper, a logger's file of A's shipment, and a bag of A's on hold
    reading_at = dt.datetime.now(dt.UTC).isoformat()
    shipper = world.post(
        "aph",
        "/api/v1/shippers",
        {
            "serial": "DS-SECRET-A",
            "model": "Elite",
            "hold_time_hours": 240,
            "qualified_until": "2099-01-01T00:00:00Z",
        },
    ).json["serial"]
    logger_file = world.post(
        "aph",
        f"/api/v1/shipments/{shipment['barcode']}/readings",
        {"device_id": "TAG-A", "readings": [{"at": reading_at, "value": -185, "unit": "C"}]},
    ).json["file"]["sha256"]
    held = world.bag_at("pack", "PAT-SECRET-D")
    held_shipment = world.ship([held["din"]])
    hot = world.post(
        "aph",
        f"/api/v1/shipments/{held_shipment['barcode']}/readings",
        {
            "device_id": "TAG-D",
            "readings": [{"at": dt.datetime.now(dt.UTC).isoformat(), "value": -100, "unit": "C"}],
        },
    )
    assert hot.json["held"] == [held["din"]], hot.json
    # a second order of A's in manufacturing, its batch filling product bags
    received = world.bag_at("receive", "PAT-SECRET-B")
    batch = world.post("op", "/api/v1/batches", {"coi": received["coi"]}).json["code"]
    for step in ("transduction", "expansion", "harvest", "formulation"):
        world.post("op", f"/api/v1/batches/{batch}/status", {"status": step})
    filled = world.post("op", f"/api/v1/batches/{batch}/products", {"count": 1}).json
    product = filled["products"][0]["din"]
    # a third, received and waiting for its batch
    waiting = world.bag_at("receive", "PAT-SECRET-C")
    subscription = world.post(
        "care",
        "/api/v1/subscriptions",
        {"coi": bag["coi"], "channel": "email", "target": "nurse@example.org"},
    ).json
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        feed_item = uow.session.exec(
            select(Notification.id).where(Notification.channel == "feed")
        ).first()
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        critical_item = uow.session.exec(
            select(Notification.id).where(
                Notification.channel == "feed", Notification.kind == "hold"
            )
        ).first()
    assert critical_item is not None
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        (token_row, *_) = admin.tokens_of(uow.session, email="care@example.org")
        care_user = admin.user_by_email(uow.session, "care@example.org").id
    # a family status link of A's, its family's e-mails on, and the hold waiting to be told
    status_link = world.post("care", f"/api/v1/orders/{bag['coi']}/status-links", {}).json
    family_token = status_link["url"].rsplit("/", 1)[1]
    opted = world.app.test_client().post(
        f"/status/{family_token}/emails", data={"emails": "on", "email": "kin@example.net"}
    )
    assert "emails=on" in opted.headers["Location"]
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        family_subscription = uow.session.exec(
            select(Subscription.id).where(Subscription.target == "kin@example.net")
        ).one()
    hold_sequence = next(
        e["sequence"]
        for e in world.get("care", f"/api/v1/orders/{held['coi']}/events").json["events"]
        if e["action"] == "hold"
    )
    # a refused scan of A's, for the review queue
    world.scan("aph", bag["barcode"], "verify_label", "APH-1")
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        refusal = uow.session.exec(select(RefusedScan.id)).first()
    # A's plan for its first order, on a slot A's manufacturing site published
    today = dt.datetime.now(dt.UTC).date()
    slot_day = (today + dt.timedelta(days=5)).isoformat()
    published = world.post(
        "op",
        "/api/v1/capacity",
        {"site": "MFG-1", "product": "axi-cel", "date": slot_day, "slots": 2},
    )
    assert published.status_code == 201, published.json
    planned = world.post(
        "care", f"/api/v1/orders/{bag['coi']}/plan", {"apheresis_on": today.isoformat()}
    )
    assert planned.status_code == 201, planned.json
    a = {
        "today": today.isoformat(),
        "slot_day": slot_day,
        "user": care_user,
        "refusal": refusal,
        "product_barcode": Din.from_value(product).barcode,
        "token": token_row.id,
        "coi": bag["coi"],
        "din": bag["din"],
        "barcode": bag["barcode"],
        "shipment": shipment["barcode"],
        "subscription": subscription["id"],
        "feed_item": feed_item,
        "critical_item": critical_item,
        "next_action": "pickup",
        "next_site": "APH-1",
        "batch": batch,
        "coi2": waiting["coi"],
        "shipper": shipper,
        "logger_file": logger_file,
        "reading_at": reading_at,
        "held": held["din"],
        "held_coi": held["coi"],
        "hold_sequence": hold_sequence,
        "status_link": status_link["id"],
        "family_subscription": family_subscription,
        "epcis_event": quote(
            world.get("aph", f"/api/v1/orders/{bag['coi']}/epcis").json["epcisBody"]["eventList"][
                0
            ]["eventID"],
            safe="",
        ),
    }
    secrets_of_a = (
        bag["coi"],
        bag["din"],
        "PAT-SECRET-A",
        shipment["barcode"],
        received["coi"],
        product,
        "PAT-SECRET-B",
        waiting["coi"],
        batch,
        "DS-SECRET-A",
        logger_file,
        held["din"],
        "TAG-A",
    )

    before = a_record(world, bag["coi"])
    failures = []
    # what network B has sent so far: an echo of one's own input (in an error, or in the
    # refused scans one's own QA reviews) tells nothing; anything else of A's is a leak
    sent = ""
    for route, build in sorted(CASES.items()):
        for who in NETWORK_B:
            method, path, body = build(a)
            response = world.client.open(path, method=method, json=body, headers=world.headers(who))
            text = response.get_data(as_text=True)
            if route == ("GET", "/api/v1/identifiers"):
                continue  # parses a text the caller already has: nothing of A's is looked up
            sent += path + json.dumps(body)
            leaked = [s for s in secrets_of_a if s in text and s not in sent]
            if (
                200 <= response.status_code < 300
                and route not in GLOBAL_WRITES
                and (method != "GET" or leaked)
                and not (
                    route in PER_ITEM
                    and '"accepted": 0' in text.replace('"accepted":0', '"accepted": 0')
                )
            ):
                failures.append(f"{who} {method} {path}: {response.status_code} {text[:120]}")
            elif leaked:
                failures.append(f"{who} {method} {path}: leaks {leaked}")
    assert failures == []
    assert a_record(world, bag["coi"]) == before

    # the same through the pages, signed in as each user of network B
    for who in NETWORK_B:
        browser = world.browser(who)
        for (method, _rule), build in sorted(PAGE_CASES.items()):
            _method, path, form = build(a)
            data = None if form is None else {**form, "csrf_token": csrf_token(browser, "/login")}
            response = browser.open(path, method=method, data=data)
            sent += path + json.dumps(form)
            text = response.get_data(as_text=True)
            leaked = [s for s in secrets_of_a if s in text and s not in sent]
            if leaked:
                failures.append(f"{who} page {method} {path}: leaks {leaked}")
    assert failures == []
    assert a_record(world, bag["coi"]) == before
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        assert all(site.local_passwords for site in uow.session.exec(select(Site)))
        assert all(o.merged_patient_ref is None for o in uow.session.exec(select(Order)))
