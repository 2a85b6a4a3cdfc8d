"""GMP gates: signed release before shipping, signatures in the act, a label that was really
checked, shipments that can be cancelled, condition data that cannot be pre-empted, couriers by
contract, products with an owner, two identifiers at the bedside.

- orders: the patient's date of birth and (optionally) name, identities like patient_ref.
- batches: release_signed_at, when its QA release was complete (filled in for releases
  signed before, from their approvals).
- units: expires_at (a product bag's expiry).
- custody_events: signing (what the step needed when recorded, sealed when present) and the
  action unpack (a shipment cancelled before pickup).
- signatures: covers (a release's one signature covers its product bags, sealed when present).
- shipments: the state cancelled, with who, when and why.
- logger_files: source (origin, destination or carrier); temperature_readings: one reading
  per (device, moment) per file, so a conflicting file is kept; condition_alarms: the kind
  conflict.
- sla_policies, alarm_rules: the reason and signature of each change.
- products (owner and label limits, seeded with the known CAR-T products) and
  courier_contracts: new tables.

On SQLite a changed constraint rebuilds the table, and its triggers go with the old one: they
are put back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 17:00:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types
from services.domain.products import SEED

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = (
    'enroll', 'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost', 'produce', 'batch_status', 'correct', 'readings', 'hold',
    'release_hold', 'reject_hold',
)
ACTIONS = (*OLD_ACTIONS[:20], 'unpack', *OLD_ACTIONS[20:])
OLD_SHIPMENT_STATES = ('open', 'in_transit', 'delivered', 'received')
SHIPMENT_STATES = (*OLD_SHIPMENT_STATES, 'cancelled')
OLD_ALARM_KINDS = ('instant', 'continuous', 'cumulative', 'gap')
ALARM_KINDS = (*OLD_ALARM_KINDS, 'conflict')
APPEND_ONLY = ('custody_events', 'temperature_readings', 'condition_alarms')
ORDER_IDENTITY = (
    'coi', 'patient_ref', 'product', 'collection_site_id', 'manufacturing_site_id',
    'treatment_site_id', 'patient_birth_date', 'patient_name',
)

_UTC = services.db.types.UTCDateTime
_STR = sqlmodel.sql.sqltypes.AutoString


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _sqlite_append_only(table: str, create: bool) -> None:
    """The two triggers of an append-only table on SQLite (0006, 0009), which a rebuild drops."""
    what = 'the custody record' if table == 'custody_events' else 'the record'
    for verb in ('UPDATE', 'DELETE'):
        name = f"{table}_no_{verb.lower()}"
        if create:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {verb} ON {table} BEGIN SELECT RAISE(ABORT, "
                f"'vein2vein: {verb} on {table} refused: {what} is append-only'); END"
            )
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _order_identity(sqlite: bool) -> None:
    """orders' identity trigger (0007), now watching the date of birth and name too."""
    watched = ", ".join(ORDER_IDENTITY)
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS orders_identity")
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ORDER_IDENTITY)
        op.execute(
            f"CREATE TRIGGER orders_identity BEFORE UPDATE OF {watched} ON orders "
            f"WHEN {changed} "
            "BEGIN SELECT RAISE(ABORT, 'vein2vein: an identity in orders is never changed'); END"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS orders_identity ON orders")
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ORDER_IDENTITY)
        op.execute(
            f"CREATE TRIGGER orders_identity BEFORE UPDATE OF {watched} ON orders "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION vein2vein_identity_immutable()"
        )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'

    op.add_column('orders', sa.Column('patient_birth_date', sa.Date(), nullable=True))
    op.add_column('orders', sa.Column('patient_name', _STR(length=200), nullable=True))
    _order_identity(sqlite)
    op.add_column('batches', sa.Column('release_signed_at', _UTC(), nullable=True))
    op.add_column('units', sa.Column('expires_at', _UTC(), nullable=True))
    op.add_column('signatures', sa.Column('covers', sa.JSON(), nullable=True))
    for table in ('sla_policies', 'alarm_rules'):
        op.add_column(table, sa.Column('reason', _STR(length=500), nullable=True))
        op.add_column(table, sa.Column('signer_name', _STR(length=200), nullable=True))
        op.add_column(table, sa.Column('signed_at', _UTC(), nullable=True))
    op.add_column('logger_files', sa.Column('source', _STR(length=16), nullable=True))

    if sqlite:
        for table in APPEND_ONLY:
            _sqlite_append_only(table, create=False)
    with op.batch_alter_table('custody_events') as batch:
        batch.add_column(sa.Column('signing', _STR(length=16), nullable=True))
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
    with op.batch_alter_table('shipments') as batch:
        batch.add_column(sa.Column('cancelled_at', _UTC(), nullable=True))
        batch.add_column(sa.Column('cancelled_by_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('cancel_reason', _STR(length=500), nullable=True))
        batch.create_foreign_key(
            op.f('fk_shipments_cancelled_by_id_users'), 'users', ['cancelled_by_id'], ['id']
        )
        batch.drop_constraint(op.f('ck_shipments_shipment_state'), type_='check')
        batch.create_check_constraint(
            op.f('ck_shipments_shipment_state'), _in('state', SHIPMENT_STATES)
        )
    with op.batch_alter_table('temperature_readings') as batch:
        batch.drop_constraint(
            op.f('uq_temperature_readings_shipment_id_device_id_at'), type_='unique'
        )
        batch.create_unique_constraint(
            op.f('uq_temperature_readings_shipment_id_device_id_at_file_id'),
            ['shipment_id', 'device_id', 'at', 'file_id'],
        )
    with op.batch_alter_table('condition_alarms') as batch:
        batch.drop_constraint(op.f('ck_condition_alarms_alarm_kind'), type_='check')
        batch.create_check_constraint(
            op.f('ck_condition_alarms_alarm_kind'), _in('kind', ALARM_KINDS)
        )
    if sqlite:
        for table in APPEND_ONLY:
            _sqlite_append_only(table, create=True)

    op.create_table('products',
    sa.Column('code', _STR(length=64), nullable=False),
    sa.Column('name', _STR(length=200), nullable=False),
    sa.Column('owner_site_id', sa.Integer(), nullable=True),
    sa.Column('label_thaw_minutes', sa.Float(), nullable=True),
    sa.Column('shelf_life_days', sa.Float(), nullable=True),
    sa.Column('source', _STR(length=500), nullable=True),
    sa.Column('created_at', _UTC(), nullable=False),
    sa.ForeignKeyConstraint(['owner_site_id'], ['sites.id'], name=op.f('fk_products_owner_site_id_sites')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_products'))
    )
    op.create_index(op.f('ix_products_owner_site_id'), 'products', ['owner_site_id'], unique=False)
    op.create_table('courier_contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('courier_site_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', _UTC(), nullable=False),
    sa.Column('ended_at', _UTC(), nullable=True),
    sa.ForeignKeyConstraint(['courier_site_id'], ['sites.id'], name=op.f('fk_courier_contracts_courier_site_id_sites')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_courier_contracts_created_by_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_courier_contracts_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_courier_contracts')),
    sa.UniqueConstraint('site_id', 'courier_site_id', name=op.f('uq_courier_contracts_site_id_courier_site_id'))
    )
    op.create_index(op.f('ix_courier_contracts_courier_site_id'), 'courier_contracts', ['courier_site_id'], unique=False)

    _seed_products()
    # a release signed (approved) after the act, before signatures came with it, is complete
    op.execute("""
        UPDATE batches SET release_signed_at = (
            SELECT MIN(s.signed_at) FROM signatures s
            JOIN custody_events e ON e.id = s.event_id
            WHERE e.batch_id = batches.id AND e.action = 'batch_status'
              AND e.batch_state = 'released' AND s.meaning = 'approved'
        )
        WHERE state = 'released'
    """)


def _seed_products() -> None:
    """The known CAR-T products with their labels' thaw limits (sources in
    services/domain/products.py), and every other product an order or a policy names. No owner:
    the installation names each product's owning manufacturing site."""
    products = sa.table(
        'products',
        sa.column('code', sa.String), sa.column('name', sa.String),
        sa.column('label_thaw_minutes', sa.Float), sa.column('source', sa.String),
        sa.column('created_at', _UTC()),
    )
    now = dt.datetime.now(dt.UTC)
    rows = [
        {"code": p.code, "name": p.name, "label_thaw_minutes": p.label_thaw_minutes,
         "source": p.source, "created_at": now}
        for p in SEED
    ]
    connection = op.get_bind()
    known = {row["code"] for row in rows}
    named = set()
    for table in ('orders', 'sla_policies', 'alarm_rules'):
        named |= {r[0] for r in connection.execute(sa.text(f"SELECT DISTINCT product FROM {table}"))}
    rows += [
        {"code": code, "name": code, "label_thaw_minutes": None,
         "source": "named by an order or a policy before products were kept", "created_at": now}
        for code in sorted(named - known)
    ]
    op.bulk_insert(products, rows)


def downgrade() -> None:
    raise NotImplementedError(
        "signatures, conflicts and cancellations are part of the append-only record"
    )
