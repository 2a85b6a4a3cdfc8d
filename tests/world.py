"""Test data through the real operations and the real API: sites, users, tokens, bags."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.db import UnitOfWork
from services.domain.custody import Role, SiteKind
from services.domain.errors import DomainError
from services.domain.identifiers import Din, parse_scan
from services.operations import admin, contracts, passwords, products

SITES = [
    ("APH-1", SiteKind.COLLECTION, "First Apheresis", "A1001"),
    ("APH-2", SiteKind.COLLECTION, "Second Apheresis", "B2002"),
    ("COUR-1", SiteKind.COURIER, "First Courier", None),
    ("COUR-2", SiteKind.COURIER, "Second Courier", None),
    ("MFG-1", SiteKind.MANUFACTURING, "First Manufacturing", "M3003"),
    ("MFG-2", SiteKind.MANUFACTURING, "Second Manufacturing", "N4004"),
    ("TRT-1", SiteKind.TREATMENT, "First Treatment", None),
    ("TRT-2", SiteKind.TREATMENT, "Second Treatment", None),
]

# short name -> (role, site)
USERS = {
    "aph": (Role.APHERESIS_STAFF, "APH-1"),
    "aph2": (Role.APHERESIS_STAFF, "APH-2"),
    "courier": (Role.COURIER, "COUR-1"),
    "courier2": (Role.COURIER, "COUR-2"),
    "op": (Role.MANUFACTURING_OPERATOR, "MFG-1"),
    "op2": (Role.MANUFACTURING_OPERATOR, "MFG-2"),
    "qa": (Role.QA, "MFG-1"),
    "care": (Role.CARE_TEAM, "TRT-1"),
    "care2": (Role.CARE_TEAM, "TRT-2"),
    "qa2": (Role.QA, "MFG-2"),
    "admin": (Role.ADMIN, "TRT-1"),
    "admin2": (Role.ADMIN, "TRT-2"),
}

PASSWORD = "correct horse battery"
# each network's sites contract its own courier; axi-cel is owned by MFG-1
CONTRACTS = [
    ("APH-1", "COUR-1"),
    ("MFG-1", "COUR-1"),
    ("APH-2", "COUR-2"),
    ("MFG-2", "COUR-2"),
]
PRODUCT_OWNER = ("axi-cel", "MFG-1")


def _linear_din(barcode: str) -> bool:
    """A bag's linear DIN barcode (=, 13 characters, 2 valid flags), as a scanner reads it."""
    try:
        scanned = parse_scan(barcode)
    except DomainError:
        return False
    return scanned.din is not None and scanned.form == "barcode"


def signed_by_default(action: str, site: str) -> bool:
    """The steps the sites sign when they configured nothing: receipt at a manufacturing site,
    infusion at a treatment site (services.domain.signatures.DEFAULT_STEPS)."""
    return (action == "receive" and site.startswith("MFG")) or action == "infuse"


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the form on ``path``, read from the page as a browser would."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str, **query: str) -> TestResponse:
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        query_string=query,
    )


# who scans each outbound step, and where
OUTBOUND = [
    ("verify_label", "aph", "APH-1"),
    ("cryopreserve", "aph", "APH-1"),
    ("pack", "aph", "APH-1"),
    ("pickup", "courier", "APH-1"),
    ("deliver", "courier", "MFG-1"),
    ("receive", "op", "MFG-1"),
    ("start_manufacturing", "op", "MFG-1"),
]


@dataclass
class World:
    app: Any
    client: FlaskClient
    tokens: dict[str, str] = field(default_factory=dict)
    with_password: set[str] = field(default_factory=set)  # users whose password is set

    @classmethod
    def build(cls, app: Any) -> World:
        world = cls(app=app, client=app.test_client())
        with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
            for code, kind, name, fin in SITES:
                admin.add_site(uow.session, code=code, kind=kind, name=name, fin=fin)
            for short, (role, site) in USERS.items():
                email = f"{short}@example.org"
                admin.add_user(uow.session, email=email, role=role, site_code=site)
                _row, token = admin.create_token(uow.session, email=email)
                world.tokens[short] = token
            for site, courier in CONTRACTS:
                contracts.set_contract(
                    uow.session,
                    actor=None,
                    site=admin.site_by_code(uow.session, site),
                    courier=courier,
                    active=True,
                    now=dt.datetime.now(dt.UTC),
                )
            product, owner = PRODUCT_OWNER
            products.set_owner(uow.session, code=product, owner=owner, now=dt.datetime.now(dt.UTC))
            uow.commit()
        return world

    def password(self, who: str) -> str:
        """The user's password, set once (an argon2 hash costs a tenth of a second)."""
        if who not in self.with_password:
            with UnitOfWork(self.app.extensions["vein2vein"].db.session_factory) as uow:
                passwords.set_password(uow.session, email=f"{who}@example.org", password=PASSWORD)
                uow.commit()
            self.with_password.add(who)
        return PASSWORD

    def signature(self, who: str) -> dict[str, str]:
        """The e-signature a signed act carries: the signer's password."""
        return {"password": self.password(who)}

    def browser(self, who: str, password: str = PASSWORD) -> FlaskClient:
        """A client of its own (its own cookie jar) signed in as ``who`` through the login page."""
        with UnitOfWork(self.app.extensions["vein2vein"].db.session_factory) as uow:
            passwords.set_password(uow.session, email=f"{who}@example.org", password=password)
            uow.commit()
        if password == PASSWORD:
            self.with_password.add(who)
        client = self.app.test_client()
        response = sign_in(client, f"{who}@example.org", password)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, path: str) -> TestResponse:
        return self.client.get(path, headers=self.headers(who))

    def post(self, who: str, path: str, body: dict[str, Any]) -> TestResponse:
        return self.client.post(path, json=body, headers=self.headers(who))

    def enroll(
        self,
        patient_ref: str = "PAT-0001",
        *,
        who: str = "care",
        collection: str = "APH-1",
        manufacturing: str = "MFG-1",
        treatment: str = "TRT-1",
        birth_date: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "patient_ref": patient_ref,
            "product": "axi-cel",
            "collection_site": collection,
            "manufacturing_site": manufacturing,
            "treatment_site": treatment,
        }
        if birth_date is not None:
            body["patient_birth_date"] = birth_date
        response = self.post(who, "/api/v1/orders", body)
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[return-value]

    def collect(self, coi: str, who: str = "aph", **body: Any) -> dict[str, Any]:
        response = self.post(who, f"/api/v1/orders/{coi}/collections", body)
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[return-value]

    def scan(
        self,
        who: str,
        barcode: str,
        action: str,
        site: str,
        *,
        sign: bool | None = None,
        label: bool | None = None,
        **extra: Any,
    ) -> TestResponse:
        """A scan through the API. ``sign``: send the scanner's signature with it (None: where
        the site signs the step by default, as a scanner at that site would). ``label``: a
        label check of a bag's linear barcode is made the way staff make it, printing the label
        and scanning its 2-D code (None: so, for verify_label; False: the barcode as given)."""
        if label or (label is None and action == "verify_label" and _linear_din(barcode)):
            barcode = self._printed_label(who, barcode)
        body = {
            "barcode": barcode,
            "action": action,
            "site": site,
            "event_id": str(uuid.uuid4()),
            **extra,
        }
        if sign or (sign is None and signed_by_default(action, site)):
            body.setdefault("signature", self.signature(who))
        return self.post(who, "/api/v1/scans", body)

    def _printed_label(self, who: str, barcode: str) -> str:
        """The bag's label, printed, and the text of its 2-D code."""
        din = Din.from_value(barcode.strip()[1:14])
        unit = self.get(who, f"/api/v1/units/{din.value}")
        if unit.status_code != 200:
            return barcode  # a bag the scanner cannot see: scanned as it is, refused as such
        self.label(who, din.value)
        return str(unit.json["label_2d"])

    def label(self, who: str, din: str) -> None:
        """The bag's label, printed (downloaded through the API: on record as a print)."""
        response = self.get(who, f"/api/v1/units/{din}/label?format=zpl")
        assert response.status_code == 200, response.get_data(as_text=True)

    def verify_label(self, who: str, unit: dict[str, Any], site: str = "APH-1") -> TestResponse:
        """The label printed, then checked by its 2-D code, as the apheresis staff do."""
        self.label(who, unit["din"])
        return self.scan(who, unit["label_2d"], "verify_label", site)

    def ship(
        self,
        dins: list[str],
        origin: str = "APH-1",
        destination: str = "MFG-1",
        who: str = "aph",
        carrier: str | None = "COUR-1",
    ) -> dict[str, Any]:
        response = self.post(
            who,
            "/api/v1/shipments",
            {
                "origin": origin,
                "destination": destination,
                "shipper_id": "LN2-7",
                "units": dins,
                "carrier": carrier,
            },
        )
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[return-value]

    def bag_at(self, step: str, patient_ref: str = "PAT-0001", **enroll: Any) -> dict[str, Any]:
        """A new order's bag, scanned through the outbound leg up to and including ``step``."""
        order = self.enroll(patient_ref, **enroll)
        unit = self.collect(
            order["coi"], who="aph2" if enroll.get("collection") == "APH-2" else "aph"
        )
        if step == "collected":
            return unit
        for action, who, site in OUTBOUND:
            if action == "pickup":
                self.ship([unit["din"]])
            if action == "verify_label":
                response = self.verify_label(who, unit, site)
            else:
                response = self.scan(who, unit["barcode"], action, site)
            assert response.status_code == 201, response.json
            if action == step:
                return unit
        raise AssertionError(f"no outbound step {step}")
