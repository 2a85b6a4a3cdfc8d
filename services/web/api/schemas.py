"""The API's request and response models. The OpenAPI document is generated from these."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, StringConstraints
from pydantic import Field as Constraint
from sqlmodel import Field, SQLModel
from typing_extensions import TypedDict

from services.domain.batches import BatchState
from services.domain.custody import Action, OrderState, ShipmentState, UnitKind, UnitState

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9998, 12, 31, tzinfo=dt.UTC)
MAX_ID = 2**31 - 1  # ids are the database's INTEGER


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters (line breaks, tabs, NUL) are not allowed here")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a NUL character is not allowed here")
    return value


def _in_our_calendar(value: dt.datetime) -> dt.datetime:
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("outside the calendar we keep (1970 to 9998)") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError("outside the calendar we keep (1970 to 9998)")
    return value


Code = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=32),
    AfterValidator(_printable),
]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_printable),
]
# a product's name, as policies and orders key on it
ProductName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
]
# an identifier named in a path or a body (DIN, COI, shipment or batch code): parsed later
Identifier = Annotated[str, StringConstraints(max_length=64), AfterValidator(_printable)]
# what a scanner read: anything but NUL (a scanner's CR/LF is whitespace, ignored)
Barcode = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_nul)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=1000), AfterValidator(_no_nul)
]
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_our_calendar)]
Number = Annotated[float, Constraint(allow_inf_nan=False)]
RowId = Annotated[int, Constraint(ge=1, le=MAX_ID)]
EventKind = Annotated[str, StringConstraints(max_length=32), AfterValidator(_printable)]


BirthDate = Annotated[dt.date, Constraint(ge=dt.date(1900, 1, 1), le=dt.date(9998, 12, 31))]
Password = Annotated[str, StringConstraints(max_length=256), AfterValidator(_no_nul)]
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_printable),
]
EmailText = Annotated[str, StringConstraints(max_length=254), AfterValidator(_printable)]


class ActSignature(SQLModel):
    """An electronic signature given with the act it signs: the signer's password again (the
    signer is the token's user: their identity is the first component)."""

    password: Password | None = Field(
        default=None, description="Your password (absent or empty: signature_required)"
    )


class ActWitness(SQLModel):
    """A witness's e-signature, given with the act: a second person of the site where the
    step happens, with their own e-mail and password."""

    email: EmailText = Field(description="The witness's e-mail")
    password: Password = Field(description="The witness's password")


class Problem(SQLModel):
    """An error (RFC 9457 problem details) with a stable machine ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str


# identifiers


class IdentifierQuery(SQLModel):
    text: Barcode = Field(
        min_length=1,
        max_length=256,
        description="What a scanner read (=A99992612345600, &/CHA999926AB12CD) or keyboard "
        "entry with the check character (A9999 26 123456 K)",
    )


class FlagsPublic(SQLModel):
    value: str
    kind: Literal["none", "checksum", "other"]


class IdentifierPublic(SQLModel):
    kind: Literal["din", "coi"]
    value: str
    check_character: str
    eye_readable: str
    barcode: str
    form: Literal["barcode", "keyboard", "value"]
    flags: FlagsPublic | None = None


# orders and bags


class OrderCreate(SQLModel):
    patient_ref: Text = Field(
        description="The treatment centre's pseudonymous patient reference (never a name)"
    )
    patient_birth_date: BirthDate | None = Field(
        default=None,
        description="The patient's date of birth (YYYY-MM-DD): the second identifier the "
        "bedside matches; kept only for the sites that may see the patient reference",
    )
    patient_name: PersonName | None = Field(
        default=None, description="The patient's name, if the site records it"
    )
    product: ProductName
    collection_site: Code
    manufacturing_site: Code
    treatment_site: Code


class OrderPath(SQLModel):
    coi: Identifier = Field(description="The chain of identity identifier")


class UnitPath(SQLModel):
    din: Identifier = Field(description="The bag's DIN")


class CollectionCreate(SQLModel):
    collected_at: Timestamp | None = Field(
        default=None, description="When collection ended (ISO 8601 with offset); default now"
    )
    volume_ml: Number | None = Field(default=None, gt=0, le=5000)


class UnitPublic(SQLModel):
    din: str
    check_character: str
    barcode: str
    eye_readable: str
    kind: UnitKind
    coi: str
    state: UnitState
    custodian: str = Field(description="Code of the site that holds the bag now")
    location: str = Field(description="Where the bag is, in words")
    shipment: str | None = Field(description="The shipment the bag is packed in or travels with")
    collected_at: dt.datetime = Field(description="Collected (apheresis) or filled (product)")
    volume_ml: float | None
    batch: str | None = Field(
        default=None, description="The batch that made this product, or consumed this bag"
    )
    made_from: list[str] = Field(
        default_factory=list, description="A product's apheresis bags (their DINs)"
    )
    products: list[str] = Field(
        default_factory=list, description="An apheresis bag's product bags (their DINs)"
    )
    expires_at: dt.datetime | None = Field(default=None, description="A product bag's expiry")
    label_2d: str = Field(
        default="",
        description="The text of the bag label's 2-D code (=DIN flags &/COI): what "
        "verify_label takes, scanned from the printed label",
    )


class RefusalPublic(SQLModel):
    """A refused scan of one of the order's bags, kept for QA review."""

    code: str
    detail: str
    action: str
    barcode: str
    site: str
    actor: str
    event_id: str | None
    occurred_at: dt.datetime | None
    recorded_at: dt.datetime


class DeadlinePublic(SQLModel):
    coi: str
    din: str
    leg: str
    site: str = Field(description="Who holds the bag on this leg")
    status: Literal["on_time", "at_risk", "late", "closed_on_time", "closed_late"]
    started_at: dt.datetime
    at_risk_at: dt.datetime
    due_at: dt.datetime
    closed_at: dt.datetime | None
    overdue_hours: float = Field(description="How long past due (0 when not)")
    at_risk_flagged_at: dt.datetime | None
    late_flagged_at: dt.datetime | None
    escalated_at: dt.datetime | None
    policy_version: int


class TurnaroundPublic(SQLModel):
    started_at: dt.datetime | None = Field(description="The first collection")
    elapsed_days: float
    projected_infusion_at: dt.datetime | None
    projected_days: float | None
    target_days: float
    over_target: bool
    infused_at: dt.datetime | None = Field(default=None, description="The last infusion")
    vein_to_vein_days: float | None = Field(
        default=None, description="First collection to infusion, once the order is completed"
    )


class OrderPublic(SQLModel):
    coi: str
    check_character: str
    eye_readable: str
    barcode: str
    state: OrderState
    product: str
    patient_ref: str | None = Field(
        description="Shown only to the collection and treatment sites; null for everyone else"
    )
    patient_birth_date: dt.date | None = Field(
        default=None, description="As patient_ref: the second identifier, where recorded"
    )
    patient_name: str | None = Field(default=None, description="As patient_ref, where recorded")
    collection_site: str
    manufacturing_site: str
    treatment_site: str
    created_at: dt.datetime
    units: list[UnitPublic]
    refusals: list[RefusalPublic] = Field(
        description="Refused scans of the order's bags, oldest first"
    )
    deadlines: list[DeadlinePublic] = Field(description="Every leg of every bag, open or closed")
    batches: list[BatchPublic] = Field(default_factory=list)
    turnaround: TurnaroundPublic
    warnings: list[str] = Field(
        default_factory=list,
        description="What the enrolment noticed without refusing it: the patient reference "
        "enrolled already in another order you can see",
    )


class EventPublic(SQLModel):
    sequence: int = Field(description="Gapless position of the event in its order's record")
    event_id: str | None = Field(description="The scanner's event id (null for a registration)")
    coi: str
    din: str | None = Field(description="The bag; null for a batch's status change")
    action: str
    from_state: UnitState | None
    to_state: UnitState | None
    site: str
    actor: str
    custodian: str
    shipment: str | None
    occurred_at: dt.datetime = Field(description="The scanner's clock")
    recorded_at: dt.datetime = Field(description="The server's clock: the audit time")
    needs_review: bool
    review_reason: str | None
    batch: str | None = Field(default=None, description="The batch the event belongs to")
    batch_status: BatchState | None = Field(default=None, description="A batch's new status")
    reason: str | None = Field(default=None, description="Why (a batch failure, a correction)")
    corrects: int | None = Field(
        default=None, description="A correction: the sequence of the event it corrects"
    )
    details: dict[str, Any] | None = Field(
        default=None,
        description="A condition record's details: a logger file's SHA-256 (readings), the "
        "alarms that put a bag on hold (hold)",
    )
    signature: str | None = Field(
        default=None,
        description="not_required | awaiting | awaiting_witness | signed (order timeline)",
    )
    signing: str | None = Field(
        default=None,
        description="What its step needed when it was recorded: none | signed | witnessed "
        "(signed in the act); null: recorded before this was kept",
    )
    signatures: list[SignaturePublic] = Field(default_factory=list)


class EventList(SQLModel):
    din: str
    coi: str
    events: list[EventPublic]


class OrderTimeline(SQLModel):
    coi: str
    events: list[EventPublic] = Field(
        description="Every event of the order in its gapless sequence: each bag's steps and "
        "each batch status"
    )


# scans


class ScanCreate(SQLModel):
    barcode: Barcode
    action: Action
    site: Code = Field(description="Code of the site where the scan happens")
    event_id: uuid.UUID | None = Field(
        default=None, description="Made by the scanner; the same event_id twice is one scan"
    )
    occurred_at: Timestamp | None = Field(
        default=None, description="The scanner's clock, ISO 8601 with offset; default now"
    )
    shipment: Identifier | RowId | None = Field(
        default=None,
        description="A shipment's code (SHP-00000012) or its id as POST /shipments answers "
        "(12): pack into it, or check the bag travels in it",
    )
    coi: Identifier | None = Field(
        default=None,
        description="The chain of identity being worked on; a bag of any other is refused",
    )
    patient_ref: Text | None = Field(
        default=None, description="The patient scanned at the bedside (infuse)"
    )
    patient_birth_date: BirthDate | None = Field(
        default=None,
        description="The patient's date of birth from the wristband (infuse): the second "
        "identifier, required where the order recorded one",
    )
    signature: ActSignature | None = Field(
        default=None,
        description="Where the site signs this step (defaults: manufacturing receive, "
        "treatment infuse): your password, or the scan is refused (signature_required)",
    )
    witness: ActWitness | None = Field(
        default=None, description="Where the site's rule asks for a witness: theirs"
    )


class ScanResult(SQLModel):
    """An accepted scan and the custody events it made (one per bag it moved)."""

    event_id: str
    action: Action
    site: str
    actor: str
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    shipment: str | None
    replayed: bool = Field(description="True when this event_id had been recorded before")
    din: str | None = Field(description="The bag, when the scan named one bag")
    coi: str | None
    from_state: UnitState | None
    to_state: UnitState | None
    sequence: int | None
    needs_review: bool
    events: list[EventPublic]


# shipments


class ShipmentCreate(SQLModel):
    origin: Code
    destination: Code
    shipper_id: Text = Field(description="Serial of the dry-vapour shipper")
    units: list[Identifier] = Field(
        default_factory=list, max_length=200, description="Packed bags' DINs"
    )
    carrier: Code | None = Field(default=None, description="The courier site that will carry it")


class ShipmentCancel(SQLModel):
    reason: Reason = Field(min_length=1, description="Why the shipment is cancelled")


class ShipmentPath(SQLModel):
    shipment: Annotated[Identifier, StringConstraints(max_length=32)] = Field(
        description="SHP-00000012 or 12"
    )


class ShipmentPublic(SQLModel):
    id: int
    barcode: str
    shipper_id: str
    origin: str
    destination: str
    carrier: str | None
    state: ShipmentState
    units: list[str]
    created_at: dt.datetime
    received: list[str] = Field(
        default_factory=list, description="Bags of the manifest received at the destination"
    )
    outstanding: list[str] = Field(
        default_factory=list, description="Bags of the manifest not received (yet)"
    )
    reconciled_at: dt.datetime | None = None
    missing: list[str] | None = Field(
        default=None, description="Bags the destination reported missing when it reconciled"
    )
    cancelled_at: dt.datetime | None = Field(
        default=None, description="Cancelled before pickup: its bags went back, with the reason"
    )
    cancel_reason: str | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="What to act on: a leg allowed longer than the shipper's qualified hold "
        "time, or a shipper nobody registered",
    )


class BatchCreate(SQLModel):
    coi: Identifier = Field(description="The order's chain of identity")
    units: list[Identifier] | None = Field(
        default=None,
        max_length=20,
        description="Its received apheresis bags to use (DINs); all of them when left out",
    )
    occurred_at: Timestamp | None = None


class BatchPath(SQLModel):
    batch: Annotated[Identifier, StringConstraints(max_length=32)] = Field(
        description="BAT-000012 or 12"
    )


class BatchQuery(SQLModel):
    state: BatchState | None = None


class BatchStatusUpdate(SQLModel):
    status: BatchState
    reason: Reason | None = Field(default=None, description="Required when the batch fails")
    occurred_at: Timestamp | None = None
    signature: ActSignature | None = Field(
        default=None,
        description="A QA release is signed in the act (where the site signs releases, the "
        "default): your password; one signature covers the batch and all its product bags",
    )
    witness: ActWitness | None = Field(
        default=None, description="Where the site's rule asks for a witness of the release"
    )


class ProductsCreate(SQLModel):
    count: int = Field(ge=1, le=10, description="How many product bags were filled")
    volume_ml: Number | None = Field(default=None, gt=0, le=2000)
    filled_at: Timestamp | None = None
    expires_at: Timestamp | None = Field(
        default=None, description="The bags' expiry; default: the product's shelf life"
    )


class BatchStepPublic(SQLModel):
    sequence: int
    status: BatchState
    reason: str | None
    actor: str
    occurred_at: dt.datetime
    recorded_at: dt.datetime


class BatchPublic(SQLModel):
    id: int
    code: str
    coi: str
    site: str = Field(description="The manufacturing site")
    state: BatchState
    opened_at: dt.datetime
    updated_at: dt.datetime
    failure_reason: str | None
    inputs: list[str] = Field(description="The apheresis bags it was made from (DINs)")
    products: list[UnitPublic]
    history: list[BatchStepPublic]
    release_signed_at: dt.datetime | None = Field(
        default=None,
        description="When its QA release was complete (signed): its product bags may leave",
    )


class BatchList(SQLModel):
    batches: list[BatchPublic]


def new_event_id() -> str:
    return str(uuid.uuid4())


# API tokens


class TokenPath(SQLModel):
    token_id: RowId


class TokenPublic(SQLModel):
    id: int
    name: str
    prefix: str = Field(description="The first characters, to recognise it; never the token")
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenList(SQLModel):
    tokens: list[TokenPublic]


# subscriptions and the feed


class SubscriptionCreate(SQLModel):
    coi: Identifier | None = Field(default=None, description="Subscribe to one order")
    site: Code | None = Field(default=None, description="Or to every order naming your site")
    channel: Literal["email", "webhook"]
    target: Annotated[str, AfterValidator(_no_nul)] = Field(
        min_length=3, max_length=2048, description="E-mail address or URL"
    )
    events: list[EventKind] | None = Field(
        max_length=64,
        default=None,
        description="Event kinds (collect, pickup, ..., refused_scan); all if left out",
    )
    digest: bool = Field(
        default=False,
        description="Progress news folded into one message a day (DIGEST_HOUR at your site); "
        "warnings and critical news still come at once",
    )


class SubscriptionPath(SQLModel):
    subscription_id: RowId


class SubscriptionPublic(SQLModel):
    id: int
    coi: str | None
    site: str | None
    channel: str
    target: str
    events: list[str] | None
    active: bool
    disabled_reason: str | None
    created_at: dt.datetime
    digest: bool = False
    secret: str | None = Field(
        default=None,
        description="The webhook signing secret (Standard Webhooks), shown only when created",
    )


class SubscriptionList(SQLModel):
    subscriptions: list[SubscriptionPublic]


class FeedQuery(SQLModel):
    unread: bool = False
    limit: int = Field(default=50, ge=1, le=500)


class NotificationPath(SQLModel):
    notification_id: RowId


class FeedItem(SQLModel):
    id: int
    kind: str
    severity: str = Field(default="information", description="critical, warning or information")
    summary: str
    coi: str
    din: str | None
    site: str
    created_at: dt.datetime
    read_at: dt.datetime | None
    data: dict[str, Any]


class Feed(SQLModel):
    site: str
    items: list[FeedItem]


# turnaround


class DelayList(SQLModel):
    items: list[DeadlinePublic]


class TurnaroundQuery(SQLModel):
    since: Timestamp
    until: Timestamp
    site: Code | None = None


class LegSummaryPublic(SQLModel):
    site: str
    leg: str
    count: int
    median_hours: float
    p90_hours: float
    late: int


class TurnaroundSummary(SQLModel):
    since: dt.datetime
    until: dt.datetime
    items: list[LegSummaryPublic]


class ProductPath(SQLModel):
    product: ProductName


class SlaPolicyUpdate(SQLModel):
    limits_hours: dict[EventKind, Number] = Field(default_factory=dict, description="leg -> hours")
    typical_hours: dict[EventKind, Number] = Field(
        default_factory=dict, description="leg -> hours it usually takes (for projections)"
    )
    at_risk: Number | None = Field(default=None, gt=0, lt=1)
    escalate_after_hours: Number | None = Field(default=None, gt=0)
    target_days: Number | None = Field(default=None, gt=0)
    reason: Reason | None = Field(default=None, description="Why it changes (required)")
    signature: ActSignature | None = Field(
        default=None,
        description="QA of the product's owning site signs the change: your password again",
    )


class SlaPolicyPublic(SQLModel):
    product: str
    version: int
    limits_hours: dict[str, float]
    typical_hours: dict[str, float]
    at_risk: float
    escalate_after_hours: float
    target_days: float


OrderPublic.model_rebuild()  # it names BatchPublic, defined further down


# the audit chain


class SignaturePublic(SQLModel):
    printed_name: str
    signer: str = Field(description="The signer's e-mail")
    meaning: Literal["performed", "verified", "approved", "witness"]
    witness: bool
    signed_at: dt.datetime
    record_hash: str = Field(description="The hash of the record signed: the binding")


class AuditLink(SQLModel):
    position: int
    record: Literal["custody_event", "refused_scan"]
    sequence: int | None = Field(description="The custody event's sequence (null: a refusal)")
    action: str
    din: str | None
    code: str | None = Field(description="A refusal's code")
    recorded_at: dt.datetime
    prev_hash: str
    hash: str
    signatures: list[SignaturePublic] = Field(default_factory=list)


class AuditPublic(SQLModel):
    coi: str
    verified: bool
    finding: str | None = Field(description="The first broken record and what is wrong")
    records: list[AuditLink]


class CorrectionCreate(SQLModel):
    sequence: RowId = Field(description="The event corrected (its sequence in the order)")
    reason: Reason = Field(min_length=1)
    signature: ActSignature | None = Field(
        default=None,
        description="The correction is e-signed in the same request: 422 signature_required "
        "without it, 403 signature_invalid with a wrong password (repeated failures make "
        "the client wait)",
    )


class SignaturePath(SQLModel):
    coi: Identifier
    sequence: RowId


class SignatureCreate(SQLModel):
    email: Annotated[str, AfterValidator(_printable)] = Field(
        max_length=254, description="Your e-mail: the first component"
    )
    password: Annotated[str, AfterValidator(_no_nul)] = Field(
        max_length=256, description="Your password: the second component"
    )
    meaning: Literal["performed", "verified", "approved", "witness"] = Field(
        description="What the signature means: performed or verified (approved: QA only; a QA "
        "release is an approval); witness: a second person of the site, after the first"
    )


EventPublic.model_rebuild()  # it names SignaturePublic, defined further down


# the chain of condition

Serial = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
    ),
]
DeviceId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
    ),
]
Hours = Annotated[float, Constraint(allow_inf_nan=False, ge=1, le=1440)]


class ShipperCreate(SQLModel):
    serial: Serial = Field(description="The shipper's serial, as on its barcode")
    model: Text = Field(description="Its make and model")
    hold_time_hours: Hours = Field(description="Its qualified hold time at or below -150 °C")
    qualified_until: Timestamp = Field(description="When its qualification runs out")


class ShipperChange(SQLModel):
    status: Literal["in_service", "quarantined", "retired"] | None = Field(
        default=None, description="Put it in or out of service (in use: by packing only)"
    )
    reason: Reason = Field(min_length=1, description="Why: kept in the admin log")
    qualified_until: Timestamp | None = Field(default=None, description="Requalified until")
    hold_time_hours: Hours | None = None


class ShipperPath(SQLModel):
    serial: Identifier = Field(description="The shipper's serial")


class ShipperPublic(SQLModel):
    serial: str
    model: str
    hold_time_hours: float
    qualified_until: dt.datetime
    status: Literal["in_service", "in_use", "quarantined", "retired"]
    status_reason: str | None
    site: str = Field(description="Its home site, which keeps and requalifies it")
    usable: bool = Field(description="In service and qualified: it may be packed now")


class ShipperList(SQLModel):
    shippers: list[ShipperPublic]


class ReadingIn(TypedDict):
    """One reading (a mapping, not a model: a month of them validates in a blink)."""

    at: Annotated[str, StringConstraints(max_length=64)]  # ISO 8601 with an offset from UTC
    value: Number
    unit: Literal["C", "F", "K"]


class ReadingsCreate(SQLModel):
    device_id: DeviceId = Field(description="The data logger's id")
    readings: list[ReadingIn] = Field(min_length=1, max_length=50_000)


class ReadingsCsvQuery(SQLModel):
    device_id: DeviceId | None = Field(
        default=None, description="The logger, when the file has no device_id column"
    )
    filename: (
        Annotated[str, StringConstraints(max_length=255), AfterValidator(_printable)] | None
    ) = None


class LoggerFilePublic(SQLModel):
    sha256: str = Field(description="The SHA-256 of the file as uploaded, sealed in the chain")
    filename: str
    media_type: str
    size: int
    devices: list[str]
    readings: int
    new_readings: int = Field(description="Readings not stored before this file")
    first_at: dt.datetime
    last_at: dt.datetime
    uploaded_by: str
    uploaded_at: dt.datetime


class AlarmPublic(SQLModel):
    kind: Literal["instant", "continuous", "cumulative", "gap", "conflict"]
    device_id: str
    product: str
    rule_version: int
    started_at: dt.datetime
    ended_at: dt.datetime
    minutes: float
    peak_c: float | None
    description: str


class ReadingsImported(SQLModel):
    shipment: str
    duplicate: bool = Field(description="This file was imported before: nothing changed")
    file: LoggerFilePublic
    alarms: list[AlarmPublic] = Field(description="Alarms this import raised")
    held: list[str] = Field(description="Bags this import put on hold")


class ReadingPublic(SQLModel):
    device_id: str
    at: dt.datetime
    value_c: float


class DeviceSummary(SQLModel):
    device_id: str
    count: int
    first: dt.datetime
    last: dt.datetime
    min_c: float
    max_c: float
    mean_c: float


class AlarmRulePublic(SQLModel):
    product: str
    version: int = Field(description="0: the defaults, never changed")
    limit_c: float = Field(description="Beyond (warmer than) this, the time counts")
    instant_limit_c: float = Field(description="One reading beyond this is an alarm at once")
    continuous_minutes: float
    cumulative_minutes: float
    gap_minutes: float = Field(description="No reading for longer than this is a gap")


class AlarmRuleUpdate(SQLModel):
    limit_c: Number | None = None
    instant_limit_c: Number | None = None
    continuous_minutes: Number | None = None
    cumulative_minutes: Number | None = None
    gap_minutes: Number | None = None
    reason: Reason | None = Field(default=None, description="Why it changes (required)")
    signature: ActSignature | None = Field(
        default=None,
        description="QA of the product's owning site signs the change: your password again",
    )


class ShipmentReadings(SQLModel):
    shipment: str
    shipper: ShipperPublic | None
    leg_start: dt.datetime = Field(description="The leg: from packing ...")
    leg_end: dt.datetime | None = Field(description="... to the last receipt (null: travelling)")
    rules: list[AlarmRulePublic]
    files: list[LoggerFilePublic]
    summaries: list[DeviceSummary] = Field(description="Per device, within the leg")
    alarms: list[AlarmPublic]
    readings: list[ReadingPublic]


class LoggerFilePath(SQLModel):
    shipment: Annotated[Identifier, StringConstraints(max_length=32)]
    sha256: Annotated[str, StringConstraints(min_length=64, max_length=64, pattern=r"^[0-9a-f]+$")]


class DispositionCreate(SQLModel):
    decision: Literal["release", "reject"] = Field(
        description="release: back to the state it left; reject: out of the chain"
    )
    reason: Reason = Field(min_length=1)
    email: Annotated[str, AfterValidator(_printable)] = Field(
        max_length=254, description="Your e-mail: the signature's first component"
    )
    password: Annotated[str, AfterValidator(_no_nul)] = Field(
        max_length=256, description="Your password: the second component"
    )


# the family's status page (issue 32)


class StatusLinkCreate(SQLModel):
    expires_in_days: int | None = Field(
        default=None,
        description="How long the link works: 1 to 180 days (default 60)",
    )


class StatusLinkPath(SQLModel):
    coi: Identifier = Field(description="The chain of identity identifier")
    link_id: RowId


class StatusLinkPublic(SQLModel):
    id: int
    url: str | None = Field(
        default=None, description="The family's link, with its token: shown once, at creation"
    )
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None
    first_viewed_at: dt.datetime | None = None


class StatusNewsPath(SQLModel):
    coi: Identifier = Field(description="The chain of identity identifier")
    sequence: Annotated[int, Constraint(ge=0, le=MAX_ID)]


class StatusNewsDiscussed(SQLModel):
    reason: Reason = Field(description="How and with whom the news was discussed")


class StatusNewsPublic(SQLModel):
    sequence: int
    discussed_at: dt.datetime


# the vein-to-vein plan

PlanDay = Annotated[dt.date, Constraint(ge=dt.date(2000, 1, 1), le=dt.date(9998, 12, 31))]


class CapacityCreate(SQLModel):
    site: Code = Field(description="The manufacturing site publishing the slots")
    product: ProductName
    date: PlanDay = Field(description="The day (starts of manufacturing)")
    slots: int = Field(ge=0, le=1000, description="Slots that day (0 closes it)")


class CapacityDayPublic(SQLModel):
    date: dt.date
    slots: int
    booked: int
    free: int


class CapacityPublic(SQLModel):
    site: str
    product: str
    days: list[CapacityDayPublic]


class CapacityQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    site: Code
    product: ProductName
    start: PlanDay = Constraint(alias="from", description="The first day (YYYY-MM-DD)")
    end: PlanDay = Constraint(alias="to", description="The last day (YYYY-MM-DD)")


class PlanCreate(SQLModel):
    apheresis_on: PlanDay = Field(description="The planned apheresis date (YYYY-MM-DD)")


class PlanMove(SQLModel):
    apheresis_on: PlanDay | None = Field(default=None, description="A new apheresis date")
    manufacturing_start_on: PlanDay | None = Field(
        default=None, description="The first free slot on or after this day"
    )
    reason: Reason | None = None


class PlanCancel(SQLModel):
    reason: Reason = Field(description="Why the plan is cancelled")


class PlanPublic(SQLModel):
    coi: str
    product: str
    state: str
    apheresis_on: dt.date
    manufacturing_start_on: dt.date | None
    held_until: dt.datetime | None
    confirmed_at: dt.datetime | None
    infusion_window: dict[str, str] | None
    ld_window: dict[str, str] | None
    infusion_on: dt.date | None
    ld_started_on: dt.date | None
    ld_ended_on: dt.date | None
    repeat_ld: bool
    past_window: bool
    moves: int
    profile_version: int
    planned: dict[str, Any]
    expected: dict[str, Any]
    proposal: dict[str, Any] | None
    reason: str | None


class LymphodepletionCreate(SQLModel):
    started_on: PlanDay = Field(description="The first day of lymphodepleting chemotherapy")
    ended_on: PlanDay | None = Field(
        default=None, description="Its last day (default: from the product's profile)"
    )
    override_reason: Reason | None = Field(
        default=None,
        description="Before the product's QA release: why LD starts anyway (a second person "
        "signs the override: signature and witness)",
    )
    signature: ActSignature | None = None
    witness: ActWitness | None = None


class LymphodepletionPublic(SQLModel):
    coi: str
    sequence: int
    started_on: dt.date
    ended_on: dt.date
    infusion_window: dict[str, str] | None
    override: bool
    plan: PlanPublic | None


class NotInfusedCreate(SQLModel):
    reason: Reason = Field(description="Why the patient cannot be infused")
    fate: Literal["destroy", "return", "undecided"] = Field(
        description="What becomes of the product (its own scans record it)"
    )


class NotInfusedPublic(SQLModel):
    coi: str
    state: str = Field(description="The plan's state: not_infused")


class ProfilePublic(SQLModel):
    product: str
    version: int
    values: dict[str, Any]
    sources: dict[str, Any]
    thaw_to_infusion_minutes: float
    reason: str | None
    signer_name: str | None
    signed_at: dt.datetime | None


class ProfileUpdate(SQLModel):
    values: dict[EventKind, Any] = Field(
        description="The profile values that change (days, release_before_ld, monitoring)"
    )
    reason: Reason | None = Field(default=None, description="Why it changes (required)")
    signature: ActSignature | None = None


class PatientMergeCreate(SQLModel):
    """A patient record merge at the treatment site: the record ``old_ref`` was merged into
    ``new_ref`` (as an ADT^A40 says; POST /patient-merges/hl7 takes the message itself)."""

    old_ref: Text = Field(description="The merged (retired) patient reference")
    new_ref: Text = Field(description="The surviving patient reference")


class Relinked(SQLModel):
    coi: str
    old_ref: str
    new_ref: str


class PatientMergeResult(SQLModel):
    relinked: list[Relinked] = Field(
        description="The orders now following the surviving reference (none: nothing carried "
        "the old one, e.g. the same merge sent again)"
    )
    source: str
    message_control_id: str | None = None
