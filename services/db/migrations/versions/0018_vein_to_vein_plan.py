"""The vein-to-vein plan: product profiles, manufacturing capacity, plans, LD and its window.

- product_profiles: a product's scheduling facts, versioned like its other settings, seeded
  (version 1) for the known CAR-T products from services.domain.products.PROFILE_SEED, each
  value with its source; a value nobody confirmed stays NULL and its source says so.
- capacity_days: a manufacturing site's slots per product per day, and how many are booked.
- plans: one per order (its slot, state, the chain booked and expected).
- sites: jurisdiction (for the monitoring periods of a profile). orders: has_plan,
  infuse_from, infuse_to. Plain ADD COLUMN on both databases: a batch would rebuild them on
  SQLite and drop their identity triggers.
- custody_events: the plan's order-level actions (plan_book, plan_confirm, plan_move,
  plan_cancel, plan_expire), lymphodepletion and not_infused, in both CHECKs (action, subject);
  on SQLite the rebuild drops the append-only triggers, which are put back.

Revision ID: 0018
Revises: 0020
Create Date: 2026-12-05 07:00:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types
from services.domain.products import PROFILE_SEED

revision: str = '0018'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = (
    'enroll', 'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost', 'produce', 'batch_status', 'correct', 'unpack', 'readings', 'hold',
    'release_hold', 'reject_hold',
)
NEW_ORDER_LEVEL = (
    'plan_book', 'plan_confirm', 'plan_move', 'plan_cancel', 'plan_expire', 'lymphodepletion',
    'not_infused',
)
ACTIONS = (*OLD_ACTIONS, *NEW_ORDER_LEVEL)
OLD_ORDER_LEVEL = ('enroll', 'readings')
ORDER_LEVEL = (*OLD_ORDER_LEVEL, *NEW_ORDER_LEVEL)
PLAN_STATES = ('held', 'confirmed', 'cancelled', 'expired', 'not_infused')
PROFILE_DAYS = (
    'manufacturing_days', 'manufacturing_days_min', 'manufacturing_days_max',
    'collection_to_pickup_days', 'outbound_transit_days', 'release_to_ship_days',
    'return_transit_days', 'ld_days', 'ld_to_infusion_min_days', 'ld_to_infusion_max_days',
    'repeat_ld_after_days',
)

_UTC = services.db.types.UTCDateTime
_STR = sqlmodel.sql.sqltypes.AutoString


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _subject(order_level: Sequence[str]) -> str:
    return (
        "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL "
        "OR " + _in('action', order_level)
    )


def _sqlite_append_only(create: bool) -> None:
    """custody_events' two triggers on SQLite (0006, 0012), which a rebuild drops."""
    for verb in ('UPDATE', 'DELETE'):
        name = f"custody_events_no_{verb.lower()}"
        if create:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {verb} ON custody_events BEGIN SELECT RAISE("
                f"ABORT, 'vein2vein: {verb} on custody_events refused: the custody record is "
                "append-only'); END"
            )
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'

    op.add_column('sites', sa.Column('jurisdiction', _STR(length=8), nullable=True))
    op.add_column(
        'orders', sa.Column('has_plan', sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column('orders', sa.Column('infuse_from', sa.Date(), nullable=True))
    op.add_column('orders', sa.Column('infuse_to', sa.Date(), nullable=True))

    if sqlite:
        _sqlite_append_only(create=False)
    with op.batch_alter_table('custody_events') as batch:
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
        batch.drop_constraint(op.f('ck_custody_events_subject'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_subject'), _subject(ORDER_LEVEL))
    if sqlite:
        _sqlite_append_only(create=True)

    op.create_table(
        'product_profiles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('product', _STR(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=True) for name in PROFILE_DAYS[:10]),
        sa.Column('release_before_ld', sa.Boolean(), nullable=False),
        sa.Column('repeat_ld_after_days', sa.Integer(), nullable=True),
        sa.Column('monitoring', sa.JSON(), nullable=False),
        sa.Column('sources', sa.JSON(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', _UTC(), nullable=False),
        sa.Column('reason', _STR(length=500), nullable=True),
        sa.Column('signer_name', _STR(length=200), nullable=True),
        sa.Column('signed_at', _UTC(), nullable=True),
        sa.ForeignKeyConstraint(
            ['created_by_id'], ['users.id'], name=op.f('fk_product_profiles_created_by_id_users')
        ),
        sa.ForeignKeyConstraint(
            ['product'], ['products.code'], name=op.f('fk_product_profiles_product_products')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_product_profiles')),
        sa.UniqueConstraint(
            'product', 'version', name=op.f('uq_product_profiles_product_version')
        ),
    )
    op.create_table(
        'capacity_days',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('product', _STR(length=64), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('slots', sa.Integer(), nullable=False),
        sa.Column('booked', sa.Integer(), nullable=False),
        sa.Column('updated_by_id', sa.Integer(), nullable=True),
        sa.Column('updated_at', _UTC(), nullable=False),
        sa.CheckConstraint(
            'booked >= 0 AND booked <= slots', name=op.f('ck_capacity_days_booked')
        ),
        sa.ForeignKeyConstraint(
            ['product'], ['products.code'], name=op.f('fk_capacity_days_product_products')
        ),
        sa.ForeignKeyConstraint(
            ['site_id'], ['sites.id'], name=op.f('fk_capacity_days_site_id_sites')
        ),
        sa.ForeignKeyConstraint(
            ['updated_by_id'], ['users.id'], name=op.f('fk_capacity_days_updated_by_id_users')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_capacity_days')),
        sa.UniqueConstraint(
            'site_id', 'product', 'day', name=op.f('uq_capacity_days_site_id_product_day')
        ),
    )
    op.create_table(
        'plans',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('state', _STR(length=16), nullable=False),
        sa.Column('capacity_day_id', sa.Integer(), nullable=True),
        sa.Column('manufacturing_start_on', sa.Date(), nullable=True),
        sa.Column('apheresis_on', sa.Date(), nullable=False),
        sa.Column('held_until', _UTC(), nullable=True),
        sa.Column('booked_by_id', sa.Integer(), nullable=False),
        sa.Column('booked_at', _UTC(), nullable=False),
        sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
        sa.Column('confirmed_at', _UTC(), nullable=True),
        sa.Column('profile_version', sa.Integer(), nullable=False),
        sa.Column('planned', sa.JSON(), nullable=False),
        sa.Column('expected', sa.JSON(), nullable=False),
        sa.Column('infusion_on', sa.Date(), nullable=True),
        sa.Column('past_window', sa.Boolean(), nullable=False),
        sa.Column('ld_started_on', sa.Date(), nullable=True),
        sa.Column('ld_ended_on', sa.Date(), nullable=True),
        sa.Column('repeat_ld', sa.Boolean(), nullable=False),
        sa.Column('proposal', sa.JSON(), nullable=True),
        sa.Column('reason', _STR(length=500), nullable=True),
        sa.Column('reminders', sa.JSON(), nullable=False),
        sa.Column('moves', sa.Integer(), nullable=False),
        sa.Column('updated_at', _UTC(), nullable=False),
        sa.CheckConstraint(_in('state', PLAN_STATES), name=op.f('ck_plans_state')),
        sa.ForeignKeyConstraint(
            ['booked_by_id'], ['users.id'], name=op.f('fk_plans_booked_by_id_users')
        ),
        sa.ForeignKeyConstraint(
            ['capacity_day_id'],
            ['capacity_days.id'],
            name=op.f('fk_plans_capacity_day_id_capacity_days'),
        ),
        sa.ForeignKeyConstraint(
            ['confirmed_by_id'], ['users.id'], name=op.f('fk_plans_confirmed_by_id_users')
        ),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_plans_order_id_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_plans')),
        sa.UniqueConstraint('order_id', name=op.f('uq_plans_order_id')),
    )
    op.create_index(op.f('ix_plans_capacity_day_id'), 'plans', ['capacity_day_id'])
    op.create_index(op.f('ix_plans_infusion_on'), 'plans', ['infusion_on'])
    op.create_index(
        'ix_plans_held_until',
        'plans',
        ['held_until'],
        postgresql_where=sa.text("state = 'held'"),
        sqlite_where=sa.text("state = 'held'"),
    )
    _seed_profiles()


def _seed_profiles() -> None:
    """Version 1 of each known product's profile (services/domain/products.py's seed, each
    value with its source), for the products that are set up."""
    profiles = sa.table(
        'product_profiles',
        sa.column('product', sa.String), sa.column('version', sa.Integer),
        *(sa.column(name, sa.Integer) for name in PROFILE_DAYS),
        sa.column('release_before_ld', sa.Boolean), sa.column('monitoring', sa.JSON),
        sa.column('sources', sa.JSON), sa.column('created_at', _UTC()),
        sa.column('reason', sa.String),
    )  # fmt: skip
    known = {r[0] for r in op.get_bind().execute(sa.text("SELECT code FROM products"))}
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "product": seed.product,
            "version": 1,
            **{name: seed.values.get(name) for name in PROFILE_DAYS},
            "release_before_ld": seed.values.get("release_before_ld", True),
            "monitoring": seed.values.get("monitoring") or {},
            "sources": seed.sources,
            "created_at": now,
            "reason": "seeded from issue 30's table (check each value against the label)",
        }
        for seed in PROFILE_SEED
        if seed.product in known
    ]
    if rows:
        op.bulk_insert(profiles, rows)


def downgrade() -> None:
    raise NotImplementedError(
        "plans, bookings and lymphodepletion are events in the append-only record"
    )
