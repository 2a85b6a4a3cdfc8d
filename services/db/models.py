"""The tables. Table models never take request input directly: operations build the rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.db.types import UTCDateTime, enum_type, utcnow
from services.domain.batches import BatchState
from services.domain.condition import AlarmKind, ShipperStatus
from services.domain.custody import (
    EVENT_ACTIONS,
    ORDER_LEVEL_ACTIONS,
    Action,
    OrderState,
    Role,
    ShipmentState,
    SiteKind,
    UnitKind,
    UnitState,
)
from services.domain.notifications import Channel, NotificationState
from services.domain.sla import Leg

# Constraint names are fixed before the first migration, so every later migration can name them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _created_at() -> dt.datetime:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Site(SQLModel, table=True):
    __tablename__ = "sites"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    kind: SiteKind = Field(sa_type=enum_type(SiteKind, "site_kind"))
    name: str = Field(max_length=200)
    # ISBT 128 facility identification number; collection and manufacturing sites assign DINs
    fin: str | None = Field(default=None, max_length=5, unique=True)
    created_at: dt.datetime = _created_at()
    # the site's wall clock (an IANA time zone): what its people read times in; stored times
    # stay UTC
    time_zone: str = Field(default="UTC", max_length=64, sa_column_kwargs={"server_default": "UTC"})
    # the site whose admins added it and manage it (besides its own admins); None: its own
    # admins and the command line only
    managed_by_site_id: int | None = Field(default=None, foreign_key="sites.id")
    # the number families call with questions (a treatment site's, shown on the family's
    # status page); set by the site's admins, on record
    phone: str | None = Field(default=None, max_length=40)
    # where the site is, for the rules that differ by place (post-infusion monitoring
    # periods of a product's profile): a code such as US; None: not set
    jurisdiction: str | None = Field(default=None, max_length=8)
    # whether its people may sign in and sign with a vein2vein password; off: single sign-on
    # only (an admin's choice, on record)
    local_passwords: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})


class User(SQLModel, table=True):
    __tablename__ = "users"
    # one vein2vein user per person at an identity provider
    __table_args__ = (
        sa.Index("ix_users_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)
    name: str = Field(max_length=200)
    role: Role = Field(sa_type=enum_type(Role, "user_role"))
    site_id: int = Field(foreign_key="sites.id", index=True)
    active: bool = Field(default=True)
    password_hash: str | None = Field(default=None, max_length=255)  # argon2id; None: no login
    # (failed passwords count per account and client: login_failures)
    last_login_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # a temporary password (an admin's reset, a new account) must be changed at the next sign-in
    must_change_password: bool = Field(default=False)
    # part of every session's key: raising it signs the user out everywhere
    session_epoch: int = Field(default=0)
    created_at: dt.datetime = _created_at()
    # the identity provider's person (issuer, subject), bound at their first single sign-on by
    # the verified e-mail an admin provisioned; from then on matched by these alone
    oidc_issuer: str | None = Field(default=None, max_length=255)
    oidc_subject: str | None = Field(default=None, max_length=255)


class LoginFailure(SQLModel, table=True):
    """Wrong passwords for one account from one client (an address; an IPv6 /64), at sign-in
    and at signing. Reaching the limit blocks that client, not the account, for a while that
    doubles with each block: an outsider cannot lock anyone out. A success from the client
    clears its row; a new password clears them all."""

    __tablename__ = "login_failures"
    __table_args__ = (sa.UniqueConstraint("user_id", "client"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")  # the unique constraint's index leads with it
    client: str = Field(max_length=64)
    failures: int = Field(default=0)  # since the last block
    blocks: int = Field(default=0)  # blocks so far: the next lasts twice as long
    blocked_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_failure_at: dt.datetime = Field(sa_type=UTCDateTime)


class ApiToken(SQLModel, table=True):
    """An API token. Only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=12)
    created_at: dt.datetime = _created_at()
    expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class IdentifierSequence(SQLModel, table=True):
    """The last number handed out per identifier kind, facility and year."""

    __tablename__ = "identifier_sequences"
    __table_args__ = (sa.UniqueConstraint("kind", "fin", "year"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=8)
    fin: str = Field(max_length=5)
    year: int
    last_value: int = Field(default=0)


class Order(SQLModel, table=True):
    """One patient therapy event, identified by its chain of identity (COI)."""

    __tablename__ = "orders"

    id: int | None = Field(default=None, primary_key=True)
    coi: str = Field(max_length=15, unique=True)
    # pseudonymous reference the treatment centre uses for its patient; never on labels or events
    patient_ref: str = Field(max_length=64)
    # the patient's second identifier (and, optionally, name), recorded at enrolment by the
    # collection or treatment site: seen only where the patient reference is
    patient_birth_date: dt.date | None = Field(default=None)
    patient_name: str | None = Field(default=None, max_length=200)
    product: str = Field(max_length=64)
    collection_site_id: int = Field(foreign_key="sites.id", index=True)
    manufacturing_site_id: int = Field(foreign_key="sites.id", index=True)
    treatment_site_id: int = Field(foreign_key="sites.id", index=True)
    state: OrderState = Field(sa_type=enum_type(OrderState, "order_state"))
    # the sequence number of the order's newest custody event; events are gapless per order
    last_sequence: int = Field(default=0)
    created_by_id: int = Field(foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    # the loop closed: the last product bag infused (by the bedside clock)
    infused_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # 256 random bits (hex) keying the digests the order's enrolment seals of identities
    # (services.domain.audit.identity_digest); only for readers who may see those identities.
    # NULL: recorded before migration 0013, sealed by the COI-keyed construction
    identity_salt: str | None = Field(default=None, max_length=64)
    # a vein-to-vein plan exists (plans): its milestones re-plan it. False: scans of the order
    # read nothing of plans
    has_plan: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # the infusion window after the recorded lymphodepletion (the treatment site's days): the
    # bedside refuses an infusion outside it. None: no lymphodepletion recorded
    infuse_from: dt.date | None = Field(default=None)
    infuse_to: dt.date | None = Field(default=None)
    # the surviving reference after the hospital merged the patient's records (ADT^A40), set
    # only by a patient_merge record of the order's chain; None: the enrolment's reference.
    # (patient_ref itself is an identity sealed at enrolment and never changes)
    merged_patient_ref: str | None = Field(default=None, max_length=64)

    @property
    def current_patient_ref(self) -> str:
        """The reference the patient's wristband carries now."""
        return self.merged_patient_ref or self.patient_ref


class Batch(SQLModel, table=True):
    """One manufacturing run of an order's cells at its manufacturing site."""

    __tablename__ = "batches"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    state: BatchState = Field(sa_type=enum_type(BatchState, "batch_state"), index=True)
    opened_by_id: int = Field(foreign_key="users.id")
    opened_at: dt.datetime = Field(sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)
    failure_reason: str | None = Field(default=None, max_length=1000)
    created_at: dt.datetime = _created_at()
    # when its QA release was complete (signed as the site requires): its product bags may
    # leave only then
    release_signed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class BatchInput(SQLModel, table=True):
    """An apheresis bag a batch was made from (a product bag names its batch in units)."""

    __tablename__ = "batch_inputs"

    batch_id: int = Field(foreign_key="batches.id", primary_key=True)
    unit_id: int = Field(foreign_key="units.id", primary_key=True, unique=True)


class Shipment(SQLModel, table=True):
    __tablename__ = "shipments"

    id: int | None = Field(default=None, primary_key=True)
    shipper_id: str = Field(max_length=64)  # the physical dry-vapour shipper's serial
    origin_site_id: int = Field(foreign_key="sites.id", index=True)
    destination_site_id: int = Field(foreign_key="sites.id", index=True)
    carrier_site_id: int | None = Field(default=None, foreign_key="sites.id", index=True)
    state: ShipmentState = Field(sa_type=enum_type(ShipmentState, "shipment_state"))
    created_by_id: int = Field(foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    # the receiving site's bag-by-bag check of what arrived against the manifest
    reconciled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    reconciled_by_id: int | None = Field(default=None, foreign_key="users.id")
    missing: list[str] | None = Field(default=None, sa_type=sa.JSON)  # DINs not received
    # opened by mistake: cancelled before pickup, with who, when and why
    cancelled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_by_id: int | None = Field(default=None, foreign_key="users.id")
    cancel_reason: str | None = Field(default=None, max_length=500)


class Unit(SQLModel, table=True):
    """A bag: apheresis material or final product, identified by its DIN."""

    __tablename__ = "units"

    id: int | None = Field(default=None, primary_key=True)
    din: str = Field(max_length=13, unique=True)
    kind: UnitKind = Field(sa_type=enum_type(UnitKind, "unit_kind"))
    order_id: int = Field(foreign_key="orders.id", index=True)
    state: UnitState = Field(sa_type=enum_type(UnitState, "unit_state"))
    custodian_site_id: int = Field(foreign_key="sites.id", index=True)
    # the shipment the bag is packed in or travelling with, until it is received
    shipment_id: int | None = Field(default=None, foreign_key="shipments.id", index=True)
    collected_at: dt.datetime = Field(sa_type=UTCDateTime)
    volume_ml: float | None = Field(default=None)
    # a product bag: the batch it was filled from (its apheresis bags are the batch's inputs)
    batch_id: int | None = Field(default=None, foreign_key="batches.id", index=True)
    created_at: dt.datetime = _created_at()
    # on hold or quarantined: the state it left, to which QA's release returns it
    held_from: UnitState | None = Field(
        default=None, sa_type=enum_type(UnitState, "unit_held_from")
    )
    # a product bag's expiry, from its filling
    expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ShipmentUnit(SQLModel, table=True):
    """The manifest: every bag that was ever packed into a shipment."""

    __tablename__ = "shipment_units"

    shipment_id: int = Field(foreign_key="shipments.id", primary_key=True)
    unit_id: int = Field(foreign_key="units.id", primary_key=True, index=True)
    added_at: dt.datetime = _created_at()


class Scan(SQLModel, table=True):
    """An accepted scan. Its client ``event_id`` makes a repeated scan one scan."""

    __tablename__ = "scans"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36, unique=True)
    # SHA-256 of what the scan asked for, to tell a replay from a different scan reusing the id
    request_digest: str = Field(max_length=64)
    action: Action = Field(sa_type=enum_type(Action, "scan_action"))
    barcode: str = Field(max_length=128)
    site_id: int = Field(foreign_key="sites.id")
    actor_id: int = Field(foreign_key="users.id")
    shipment_id: int | None = Field(default=None, foreign_key="shipments.id")
    occurred_at: dt.datetime = Field(sa_type=UTCDateTime)
    recorded_at: dt.datetime = _created_at()


class CustodyEvent(SQLModel, table=True):
    """One step in one bag's chain of custody. Append-only; gapless ``sequence`` per order."""

    __tablename__ = "custody_events"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "sequence"),
        sa.CheckConstraint(
            "action IN (" + ", ".join(f"'{a}'" for a in EVENT_ACTIONS) + ")", name="action"
        ),
        # a bag's event names its bag; a batch's status change names its batch; the record
        # that opens an order's chain names only the order
        sa.CheckConstraint(
            "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL "
            "OR action IN (" + ", ".join(f"'{a}'" for a in ORDER_LEVEL_ACTIONS) + ")",
            name="subject",
        ),
        sa.UniqueConstraint("order_id", "chain_position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id")
    sequence: int
    unit_id: int | None = Field(default=None, foreign_key="units.id", index=True)
    batch_id: int | None = Field(default=None, foreign_key="batches.id", index=True)
    batch_state: BatchState | None = Field(
        default=None, sa_type=enum_type(BatchState, "event_batch_state")
    )
    reason: str | None = Field(default=None, max_length=1000)  # a failure's or correction's
    # a correction points at the event it corrects; the corrected event is never edited
    corrects_id: int | None = Field(default=None, foreign_key="custody_events.id", index=True)
    scan_id: int | None = Field(default=None, foreign_key="scans.id", index=True)
    action: str = Field(max_length=32)
    from_state: UnitState | None = Field(
        default=None, sa_type=enum_type(UnitState, "event_from_state")
    )
    to_state: UnitState | None = Field(default=None, sa_type=enum_type(UnitState, "event_to_state"))
    site_id: int = Field(foreign_key="sites.id")
    actor_id: int = Field(foreign_key="users.id")
    custodian_site_id: int = Field(foreign_key="sites.id")
    shipment_id: int | None = Field(default=None, foreign_key="shipments.id")
    occurred_at: dt.datetime = Field(sa_type=UTCDateTime)
    recorded_at: dt.datetime = _created_at()
    # a scan whose occurred_at is earlier than what was already recorded for the bag
    needs_review: bool = Field(default=False)
    review_reason: str | None = Field(default=None, max_length=500)
    # the order's hash chain (services.domain.audit), shared with its refused scans; set by
    # operations.audit.seal before the row is inserted (rows are never updated)
    chain_position: int = Field(default=0)
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(default="", max_length=64, unique=True)
    # the identities the record names, as they were (services.domain.audit.identity_finding):
    # COI, DIN and kind, the actor's e-mail, the site codes; the enrolment seals the order's own
    identity: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # what a condition record says (a logger file's SHA-256, the alarms of a hold): sealed
    details: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # what its step needed by the site's rules when it was recorded (none | signed |
    # witnessed; services.domain.signatures), sealed; None: recorded before this was kept
    signing: str | None = Field(default=None, max_length=16)


class RefusedScan(SQLModel, table=True):
    """A scan that was refused, kept for QA review: who, where, what, why."""

    __tablename__ = "refused_scans"
    # a user's refusals in a window, counted before another is kept (operations/refusals.py)
    __table_args__ = (sa.Index("ix_refused_scans_actor_recorded", "actor_id", "recorded_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str | None = Field(default=None, max_length=36, index=True)
    action: str = Field(max_length=32)
    barcode: str = Field(max_length=256)
    site_code: str = Field(max_length=32)  # as sent: it may name no site at all
    site_id: int | None = Field(default=None, foreign_key="sites.id", index=True)
    actor_id: int = Field(foreign_key="users.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="units.id", index=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    code: str = Field(max_length=64)
    detail: str = Field(max_length=1000)
    occurred_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    recorded_at: dt.datetime = _created_at()
    # the order's hash chain; a refusal naming no bag its scanner may see: the chain of the
    # scanner's own site (``site:<id>``), or, kept before there were such chains, the
    # unattributed chain (no chain site)
    chain_site_id: int | None = Field(default=None, foreign_key="sites.id", index=True)
    chain_position: int = Field(default=0)
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(default="", max_length=64, unique=True)
    identity: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class ChainHead(SQLModel, table=True):
    """The newest link of each chain: locked to append, compared with checkpoints to verify."""

    __tablename__ = "chain_heads"

    key: str = Field(primary_key=True, max_length=40)  # order:<id>, site:<id> or unattributed
    length: int = Field(default=0)
    head: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """Every chain's length and head at one moment, chained to the checkpoint before."""

    __tablename__ = "audit_checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    taken_at: dt.datetime = Field(sa_type=UTCDateTime)
    heads: dict[str, Any] = Field(sa_type=sa.JSON)
    records: int
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
    # the root of the Merkle tree of its heads, and the installation's signature of it
    root: str | None = Field(default=None, max_length=64)
    signature: str | None = Field(default=None, max_length=128)
    key_id: str | None = Field(default=None, max_length=16)


class SigningKey(SQLModel, table=True):
    """Every public key that has signed a checkpoint, so that old checkpoints verify after the
    key is rotated. Append-only."""

    __tablename__ = "signing_keys"

    key_id: str = Field(primary_key=True, max_length=16)
    algorithm: str = Field(max_length=16)
    public_key: str = Field(max_length=64)  # base64 of the raw 32 bytes
    first_used_at: dt.datetime = Field(sa_type=UTCDateTime)


class Signature(SQLModel, table=True):
    """An electronic signature on one custody event, bound to that event's hash."""

    __tablename__ = "signatures"
    __table_args__ = (
        sa.CheckConstraint(
            "meaning IN ('performed', 'verified', 'approved', 'witness')", name="meaning"
        ),
        sa.UniqueConstraint("event_id", "signer_id", "meaning"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="custody_events.id", index=True)
    signer_id: int = Field(foreign_key="users.id")
    printed_name: str = Field(max_length=200)
    meaning: str = Field(max_length=16)
    witness: bool = Field(default=False)  # a second person's signature on the same step
    signed_at: dt.datetime = Field(sa_type=UTCDateTime)
    signer_email: str | None = Field(default=None, max_length=254)  # as it was, sealed
    # a QA release's one signature covers its batch's product bags too: their DINs, sealed
    covers: list[str] | None = Field(default=None, sa_type=sa.JSON)
    record_hash: str = Field(max_length=64)
    hash: str = Field(default="", max_length=64, unique=True)


class SignatureRule(SQLModel, table=True):
    """A site's critical steps: which need a signature, and which a witness too."""

    __tablename__ = "signature_rules"

    site_id: int = Field(foreign_key="sites.id", primary_key=True)
    step: str = Field(max_length=32, primary_key=True)  # receive | release | infuse | ...
    witness_required: bool = Field(default=False)


class Subscription(SQLModel, table=True):
    """Who hears about an order's (or a site's) events, on which channel, for which kinds."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.CheckConstraint("(order_id IS NULL) <> (site_id IS NULL)", name="one_scope"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_by_id: int = Field(foreign_key="users.id", index=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="sites.id", index=True)
    channel: Channel = Field(sa_type=enum_type(Channel, "channel"))
    target: str = Field(max_length=2048)  # e-mail address, webhook URL, or the feed's site code
    events: list[str] | None = Field(default=None, sa_type=sa.JSON)  # None: every kind
    # the webhook signing secret (Standard Webhooks "whsec_..."); shown once, at creation
    # kept as a Fernet token under WEBHOOK_SECRET_KEY (services/domain/webhook_secrets.py);
    # a subscription from before that holds its secret in clear ("whsec_...")
    secret: str | None = Field(default=None, max_length=255)
    active: bool = Field(default=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime = _created_at()
    # progress news (information) held and folded into one message a day; warnings and
    # critical news still go at once
    digest: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class Notification(SQLModel, table=True):
    """The outbox: one row per (event, subscription), written with the event it announces.

    Attempts, the next attempt's time, the last error and the dead-letter state live here, not in
    Celery. ``claim_token`` is the dispatcher's hand-over to exactly one task run.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_id", "subscription_id"),
        sa.Index("ix_notifications_due", "state", "next_attempt_at"),
        # the dispatcher's "is there an older pending one in this stream?"
        sa.Index("ix_notifications_stream", "subscription_id", "order_id", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # indexed as the first column of ix_notifications_stream: no index of its own to keep up
    subscription_id: int = Field(foreign_key="subscriptions.id")
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    source: str = Field(max_length=32)  # custody_event | refused_scan
    source_id: int
    kind: str = Field(max_length=32)
    channel: Channel = Field(sa_type=enum_type(Channel, "notification_channel"))
    target: str = Field(max_length=2048)
    payload: dict[str, Any] = Field(sa_type=sa.JSON)
    state: NotificationState = Field(sa_type=enum_type(NotificationState, "notification_state"))
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = Field(sa_type=UTCDateTime)
    claim_token: str | None = Field(default=None, max_length=36)
    last_error: str | None = Field(default=None, max_length=1000)
    delivered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = _created_at()
    # a held row (progress news for a digest subscription): the digest it was folded into
    digest_id: int | None = Field(default=None, foreign_key="notifications.id")


class AlertAcknowledgement(SQLModel, table=True):
    """A critical alert of a site's feed acknowledged: by whom and when. Until then it stays
    pinned above the rest for everyone of the site."""

    __tablename__ = "alert_acknowledgements"

    notification_id: int = Field(foreign_key="notifications.id", primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    acknowledged_at: dt.datetime = Field(sa_type=UTCDateTime)


class NotificationRead(SQLModel, table=True):
    """A user has read a feed item."""

    __tablename__ = "notification_reads"

    notification_id: int = Field(foreign_key="notifications.id", primary_key=True)
    user_id: int = Field(foreign_key="users.id", primary_key=True)
    read_at: dt.datetime = _created_at()


class NotificationReplay(SQLModel, table=True):
    """The audit record of a dead letter sent again: who, when, why, and what it was."""

    __tablename__ = "notification_replays"

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notifications.id", index=True)
    replayed_by_id: int = Field(foreign_key="users.id")
    reason: str = Field(max_length=500)
    previous_state: str = Field(max_length=32)
    previous_attempts: int
    previous_error: str | None = Field(default=None, max_length=1000)
    replayed_at: dt.datetime = _created_at()


class SlaPolicy(SQLModel, table=True):
    """A product's turnaround policy. Versions are added, never changed: deadlines keep the
    limits they were opened with."""

    __tablename__ = "sla_policies"
    __table_args__ = (sa.UniqueConstraint("product", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    product: str = Field(max_length=64)
    version: int
    limits: dict[str, float] = Field(sa_type=sa.JSON)  # leg -> seconds, the most allowed
    typical: dict[str, float] = Field(sa_type=sa.JSON)  # leg -> seconds, for projections
    at_risk: float
    escalate_after_seconds: float
    target_days: float
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    # the owning site's QA signs each change (services.operations.products): why, who, when
    reason: str | None = Field(default=None, max_length=500)
    signer_name: str | None = Field(default=None, max_length=200)
    signed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


_OPEN = "closed_at IS NULL"


class Deadline(SQLModel, table=True):
    """One leg of one bag: when it started, when it is at risk, due and escalated, whether it
    has closed, and when each flag was raised (each once)."""

    __tablename__ = "deadlines"
    __table_args__ = (
        sa.UniqueConstraint("unit_id", "leg"),
        # the sweep reads only open, unflagged rows that are due: its cost follows what is due
        sa.Index(
            "ix_deadlines_at_risk_due",
            "at_risk_at",
            postgresql_where=sa.text(f"{_OPEN} AND at_risk_flagged_at IS NULL"),
            sqlite_where=sa.text(f"{_OPEN} AND at_risk_flagged_at IS NULL"),
        ),
        sa.Index(
            "ix_deadlines_late_due",
            "due_at",
            postgresql_where=sa.text(f"{_OPEN} AND late_flagged_at IS NULL"),
            sqlite_where=sa.text(f"{_OPEN} AND late_flagged_at IS NULL"),
        ),
        sa.Index(
            "ix_deadlines_escalation_due",
            "escalate_at",
            postgresql_where=sa.text(f"{_OPEN} AND escalated_at IS NULL"),
            sqlite_where=sa.text(f"{_OPEN} AND escalated_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    unit_id: int = Field(foreign_key="units.id")  # indexed first in UNIQUE (unit_id, leg)
    leg: Leg = Field(sa_type=enum_type(Leg, "leg"))
    site_id: int = Field(foreign_key="sites.id", index=True)  # who holds the bag on this leg
    policy_version: int
    limit_seconds: float
    at_risk_fraction: float
    escalate_after_seconds: float
    started_at: dt.datetime = Field(sa_type=UTCDateTime)
    at_risk_at: dt.datetime = Field(sa_type=UTCDateTime)
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    escalate_at: dt.datetime = Field(sa_type=UTCDateTime)
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    at_risk_flagged_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    late_flagged_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalated_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = _created_at()


class OrderEvent(SQLModel, table=True):
    """Something that happened to an order rather than to one bag: a leg at risk, late,
    escalated."""

    __tablename__ = "order_events"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    kind: str = Field(max_length=32)
    deadline_id: int | None = Field(default=None, foreign_key="deadlines.id", index=True)
    detail: dict[str, Any] = Field(sa_type=sa.JSON)
    recorded_at: dt.datetime = _created_at()


class LabelPrint(SQLModel, table=True):
    """Every label printed: the first, and each reprint with its reason (who, when, why)."""

    __tablename__ = "label_prints"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int | None = Field(default=None, foreign_key="units.id", index=True)
    shipment_id: int | None = Field(default=None, foreign_key="shipments.id", index=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    user_id: int = Field(foreign_key="users.id")
    copy_number: int  # 1 for the first print of this label, 2 for the first reprint, ...
    target: str = Field(max_length=16)  # pdf (the browser's print dialog) | printer (ZPL)
    reason: str | None = Field(default=None, max_length=500)  # required for a reprint
    printed_at: dt.datetime = Field(sa_type=UTCDateTime)


class Review(SQLModel, table=True):
    """QA's review of a refused scan or an event flagged for review: closed with a correction
    or with a signed "reviewed, no action" note. Bound to the hash of the record reviewed."""

    __tablename__ = "reviews"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_id"),
        sa.CheckConstraint("source IN ('refused_scan', 'custody_event')", name="source"),
        sa.CheckConstraint("outcome IN ('corrected', 'no_action')", name="outcome"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)
    source_id: int
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    outcome: str = Field(max_length=16)
    note: str = Field(max_length=1000)
    correction_id: int | None = Field(default=None, foreign_key="custody_events.id")
    reviewer_id: int = Field(foreign_key="users.id")
    printed_name: str = Field(max_length=200)
    reviewer_email: str = Field(max_length=254)
    reviewed_at: dt.datetime = Field(sa_type=UTCDateTime)
    record_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AdminChange(SQLModel, table=True):
    """Every administrative change, kept: who, when, what, before and after."""

    __tablename__ = "admin_changes"

    id: int | None = Field(default=None, primary_key=True)
    actor_id: int | None = Field(default=None, foreign_key="users.id")  # None: the command line
    # the e-mail; "<OS user> (command line)"; or what made it ("sign-in guard")
    actor: str = Field(max_length=254)
    site_id: int | None = Field(default=None, foreign_key="sites.id", index=True)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=254)
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    changed_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)


# the chain of condition


class Shipper(SQLModel, table=True):
    """A dry-vapour (LN2) shipper: a qualified thing, not a string. Kept and requalified by its
    home site; packed only while in service and qualified."""

    __tablename__ = "shippers"

    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(max_length=64, unique=True)
    model: str = Field(max_length=100)
    hold_time_hours: float  # the qualified hold time, upright
    qualified_until: dt.datetime = Field(sa_type=UTCDateTime)
    status: ShipperStatus = Field(sa_type=enum_type(ShipperStatus, "shipper_status"))
    status_reason: str | None = Field(default=None, max_length=500)
    site_id: int = Field(foreign_key="sites.id", index=True)  # its home site
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class LoggerFile(SQLModel, table=True):
    """A data logger's original file as uploaded, kept byte for byte; its SHA-256 is sealed in
    each order's chain by the ``readings`` record. The same file twice is one file."""

    __tablename__ = "logger_files"
    __table_args__ = (sa.UniqueConstraint("shipment_id", "sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    sha256: str = Field(max_length=64)
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=100)
    size: int
    content: bytes = Field(sa_type=sa.LargeBinary)
    devices: list[str] = Field(sa_type=sa.JSON)
    readings: int  # readings in the file
    new_readings: int  # of which not stored before
    first_at: dt.datetime = Field(sa_type=UTCDateTime)
    last_at: dt.datetime = Field(sa_type=UTCDateTime)
    uploaded_by_id: int = Field(foreign_key="users.id")
    uploaded_at: dt.datetime = Field(sa_type=UTCDateTime)
    # whose logger it is, by who uploaded it: origin | destination | carrier (a file of the
    # shipment's own sites outranks the carrier's); None: uploaded before this was kept
    source: str | None = Field(default=None, max_length=16)


class TemperatureReading(SQLModel, table=True):
    """One logger reading, in °C, as one file gave it. Files that disagree about a moment are
    all kept (a discrepancy for QA): one file never pre-empts another."""

    __tablename__ = "temperature_readings"
    __table_args__ = (sa.UniqueConstraint("shipment_id", "device_id", "at", "file_id"),)

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id")
    device_id: str = Field(max_length=64)
    at: dt.datetime = Field(sa_type=UTCDateTime)
    value_c: float
    file_id: int = Field(foreign_key="logger_files.id", index=True)


class AlarmRuleVersion(SQLModel, table=True):
    """A product's alarm rule. Versions are added, never changed: an alarm names the version
    it was raised under."""

    __tablename__ = "alarm_rules"
    __table_args__ = (sa.UniqueConstraint("product", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    product: str = Field(max_length=64)
    version: int
    limit_c: float
    instant_limit_c: float
    continuous_minutes: float
    cumulative_minutes: float
    gap_minutes: float
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    reason: str | None = Field(default=None, max_length=500)
    signer_name: str | None = Field(default=None, max_length=200)
    signed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConditionAlarm(SQLModel, table=True):
    """An excursion or a gap in a shipment's readings, during its leg, under a product's rule."""

    __tablename__ = "condition_alarms"
    __table_args__ = (
        sa.UniqueConstraint("shipment_id", "product", "kind", "device_id", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    product: str = Field(max_length=64)
    rule_version: int
    kind: AlarmKind = Field(sa_type=enum_type(AlarmKind, "alarm_kind"))
    device_id: str = Field(max_length=64)
    started_at: dt.datetime = Field(sa_type=UTCDateTime)
    ended_at: dt.datetime = Field(sa_type=UTCDateTime)
    minutes: float
    peak_c: float | None = Field(default=None)
    description: str = Field(max_length=500)
    file_id: int = Field(foreign_key="logger_files.id")
    raised_at: dt.datetime = Field(sa_type=UTCDateTime)


# products and who owns their settings; couriers by contract


class Product(SQLModel, table=True):
    """A product and its owning manufacturing site: only that site's QA changes the product's
    safety settings (turnaround policy, alarm rule, thaw limit), within clinical bounds."""

    __tablename__ = "products"

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    owner_site_id: int | None = Field(default=None, foreign_key="sites.id", index=True)
    # the label's thaw-to-infusion limit (None: not confirmed): no setting may exceed it
    label_thaw_minutes: float | None = Field(default=None)
    # a product bag's shelf life from filling, for its expiry (None: set per bag)
    shelf_life_days: float | None = Field(default=None)
    source: str | None = Field(default=None, max_length=500)  # where the label values came from
    created_at: dt.datetime = _created_at()


class CourierContract(SQLModel, table=True):
    """A site's contract with a courier: a shipment that names no carrier is seen and claimed
    only by the couriers its origin has contracted."""

    __tablename__ = "courier_contracts"
    __table_args__ = (sa.UniqueConstraint("site_id", "courier_site_id"),)

    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id")
    courier_site_id: int = Field(foreign_key="sites.id", index=True)
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    ended_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


# the family's status page (issue 32)


class StatusLink(SQLModel, table=True):
    """A share link to an order's family status page, made by its treatment site's care team.
    Only the SHA-256 of its token is kept; the token itself is shown once, in the link."""

    __tablename__ = "status_links"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_by_id: int = Field(foreign_key="users.id")
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by_id: int | None = Field(default=None, foreign_key="users.id")
    first_viewed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # the family's e-mail notifications (opt-in): their subscription, the stage last told
    # and when (at most one a day), and how many were sent (each outbox row's source id)
    subscription_id: int | None = Field(default=None, foreign_key="subscriptions.id")
    notified_stage: str | None = Field(default=None, max_length=32)
    notified_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    notices: int = Field(default=0)


class StatusLinkView(SQLModel, table=True):
    """How often a status link was opened, per day (UTC)."""

    __tablename__ = "status_link_views"

    link_id: int = Field(foreign_key="status_links.id", primary_key=True)
    day: dt.date = Field(primary_key=True)
    views: int = Field(default=0)


class StatusDisclosure(SQLModel, table=True):
    """News a clinician tells the family first (a hold, a bag out of specification, a failed
    batch), marked discussed by the care team: who, when, why. Until then the family's page
    does not show it."""

    __tablename__ = "status_disclosures"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    event_id: int = Field(foreign_key="custody_events.id", unique=True)
    discussed_by_id: int = Field(foreign_key="users.id")
    discussed_at: dt.datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(max_length=500)


# the vein-to-vein plan: product profiles, manufacturing capacity, plans


class ProductProfile(SQLModel, table=True):
    """A product's scheduling facts (services.domain.products.PROFILE_FIELDS). Versions are
    added, never changed; the owning site's QA signs each one. ``sources``: where each value
    came from (a value nobody confirmed is None and its source says so)."""

    __tablename__ = "product_profiles"
    __table_args__ = (sa.UniqueConstraint("product", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    product: str = Field(max_length=64, foreign_key="products.code")
    version: int
    manufacturing_days: int | None = Field(default=None)
    manufacturing_days_min: int | None = Field(default=None)
    manufacturing_days_max: int | None = Field(default=None)
    collection_to_pickup_days: int | None = Field(default=None)
    outbound_transit_days: int | None = Field(default=None)
    release_to_ship_days: int | None = Field(default=None)
    return_transit_days: int | None = Field(default=None)
    ld_days: int | None = Field(default=None)
    ld_to_infusion_min_days: int | None = Field(default=None)
    ld_to_infusion_max_days: int | None = Field(default=None)
    release_before_ld: bool = Field(default=True)
    repeat_ld_after_days: int | None = Field(default=None)
    monitoring: dict[str, Any] = Field(sa_type=sa.JSON)  # jurisdiction -> period -> days
    sources: dict[str, Any] = Field(sa_type=sa.JSON)  # field -> where its value came from
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: dt.datetime = _created_at()
    reason: str | None = Field(default=None, max_length=500)
    signer_name: str | None = Field(default=None, max_length=200)
    signed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class CapacityDay(SQLModel, table=True):
    """A manufacturing site's slots for one product on one day (starts of manufacturing), and
    how many are booked by plans that hold or confirmed one. Booking locks the row."""

    __tablename__ = "capacity_days"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "product", "day"),
        sa.CheckConstraint("booked >= 0 AND booked <= slots", name="booked"),
    )

    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id")  # the unique constraint's index leads with it
    product: str = Field(max_length=64, foreign_key="products.code")
    day: dt.date
    slots: int
    booked: int = Field(default=0)
    updated_by_id: int | None = Field(default=None, foreign_key="users.id")
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


PLAN_STATES = ("held", "confirmed", "cancelled", "expired", "not_infused")


class Plan(SQLModel, table=True):
    """An order's vein-to-vein plan: its slot, its state, the chain as it was booked
    (``planned``) and as it is expected now (``expected``), services.domain.plans."""

    __tablename__ = "plans"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in PLAN_STATES) + ")", name="state"
        ),
        # the beat's expiry reads only holds, by when they run out
        sa.Index(
            "ix_plans_held_until",
            "held_until",
            postgresql_where=sa.text("state = 'held'"),
            sqlite_where=sa.text("state = 'held'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", unique=True)
    state: str = Field(max_length=16)
    capacity_day_id: int | None = Field(default=None, foreign_key="capacity_days.id", index=True)
    manufacturing_start_on: dt.date | None = Field(default=None)  # the slot's day
    apheresis_on: dt.date
    held_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    booked_by_id: int = Field(foreign_key="users.id")
    booked_at: dt.datetime = Field(sa_type=UTCDateTime)
    confirmed_by_id: int | None = Field(default=None, foreign_key="users.id")
    confirmed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    profile_version: int = Field(default=0)
    planned: dict[str, Any] = Field(sa_type=sa.JSON)
    expected: dict[str, Any] = Field(sa_type=sa.JSON)
    # the expected infusion day (for the treatment site's week), and whether the expected
    # chain lies past its window (alerted once per slip)
    infusion_on: dt.date | None = Field(default=None, index=True)
    past_window: bool = Field(default=False)
    ld_started_on: dt.date | None = Field(default=None)
    ld_ended_on: dt.date | None = Field(default=None)
    repeat_ld: bool = Field(default=False)  # flagged: a slip after LD needs a repeat LD
    # a failed batch's proposal: the next free slot for a remanufacture
    proposal: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    reason: str | None = Field(default=None, max_length=500)  # cancelled / not infused: why
    reminders: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # sent, by key
    moves: int = Field(default=0)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class SigningTicket(SQLModel, table=True):
    """A signature's re-authentication at the identity provider (single sign-on users, 21 CFR
    11.200): issued when the provider answered with an ``auth_time`` after the request, bound
    to its signer and to what it signs (``purpose``: the act's page), consumed by that act
    once. Only its SHA-256 is stored."""

    __tablename__ = "signing_tickets"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    purpose: str = Field(max_length=300)
    witness: bool = Field(default=False)
    requested_at: dt.datetime = Field(sa_type=UTCDateTime)
    authenticated_at: dt.datetime = Field(sa_type=UTCDateTime)  # the provider's auth_time
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    consumed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
