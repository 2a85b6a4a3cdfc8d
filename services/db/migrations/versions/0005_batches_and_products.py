"""Batches, product bags, the return leg and the bedside: new tables, states and columns.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 20:55:36.501613
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNIT_STATES = (
    'collected', 'label_verified', 'cryopreserved', 'packed', 'in_transit', 'delivered',
    'received', 'in_manufacturing', 'quarantined', 'rejected', 'destroyed', 'lost',
)
UNIT_STATES = (*OLD_UNIT_STATES, 'produced', 'released', 'stored', 'thawed', 'infused')
OLD_ORDER_STATES = ('enrolled', 'in_progress')
ORDER_STATES = (*OLD_ORDER_STATES, 'completed')
OLD_ACTIONS = (
    'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost',
)
ACTIONS = (*OLD_ACTIONS, 'produce', 'batch_status')
BATCH_STATES = (
    'activation', 'transduction', 'expansion', 'harvest', 'formulation', 'cryopreservation',
    'qc_testing', 'released', 'failed',
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _batch_state(name: str) -> sa.Enum:
    return sa.Enum(*BATCH_STATES, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('state', _batch_state('batch_state'), nullable=False),
    sa.Column('opened_by_id', sa.Integer(), nullable=False),
    sa.Column('opened_at', services.db.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', services.db.types.UTCDateTime(), nullable=False),
    sa.Column('failure_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('created_at', services.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['opened_by_id'], ['users.id'], name=op.f('fk_batches_opened_by_id_users')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_batches_order_id_orders')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_batches_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches'))
    )
    op.create_index(op.f('ix_batches_order_id'), 'batches', ['order_id'], unique=False)
    op.create_index(op.f('ix_batches_site_id'), 'batches', ['site_id'], unique=False)
    op.create_index(op.f('ix_batches_state'), 'batches', ['state'], unique=False)
    op.create_table('batch_inputs',
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_inputs_batch_id_batches')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_batch_inputs_unit_id_units')),
    sa.PrimaryKeyConstraint('batch_id', 'unit_id', name=op.f('pk_batch_inputs')),
    sa.UniqueConstraint('unit_id', name=op.f('uq_batch_inputs_unit_id'))
    )
    # batch mode: plain ALTERs on PostgreSQL, a copied table on SQLite
    with op.batch_alter_table('custody_events') as batch:
        batch.add_column(sa.Column('batch_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('batch_state', _batch_state('event_batch_state'), nullable=True))
        batch.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch.alter_column('unit_id', existing_type=sa.INTEGER(), nullable=True)
        batch.alter_column('to_state', existing_type=sa.VARCHAR(length=32), nullable=True)
        batch.create_index(op.f('ix_custody_events_batch_id'), ['batch_id'], unique=False)
        batch.create_foreign_key(op.f('fk_custody_events_batch_id_batches'), 'batches', ['batch_id'], ['id'])
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
        batch.drop_constraint(op.f('ck_custody_events_event_from_state'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_event_from_state'), _in('from_state', UNIT_STATES))
        batch.drop_constraint(op.f('ck_custody_events_event_to_state'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_event_to_state'), _in('to_state', UNIT_STATES))
        batch.create_check_constraint(
            op.f('ck_custody_events_subject'),
            '(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL',
        )
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('infused_at', services.db.types.UTCDateTime(), nullable=True))
        batch.drop_constraint(op.f('ck_orders_order_state'), type_='check')
        batch.create_check_constraint(op.f('ck_orders_order_state'), _in('state', ORDER_STATES))
    with op.batch_alter_table('shipments') as batch:
        batch.add_column(sa.Column('reconciled_at', services.db.types.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('reconciled_by_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('missing', sa.JSON(), nullable=True))
        batch.create_foreign_key(op.f('fk_shipments_reconciled_by_id_users'), 'users', ['reconciled_by_id'], ['id'])
    with op.batch_alter_table('units') as batch:
        batch.add_column(sa.Column('batch_id', sa.Integer(), nullable=True))
        batch.create_index(op.f('ix_units_batch_id'), ['batch_id'], unique=False)
        batch.create_foreign_key(op.f('fk_units_batch_id_batches'), 'batches', ['batch_id'], ['id'])
        batch.drop_constraint(op.f('ck_units_unit_state'), type_='check')
        batch.create_check_constraint(op.f('ck_units_unit_state'), _in('state', UNIT_STATES))


def downgrade() -> None:
    with op.batch_alter_table('units') as batch:
        batch.drop_constraint(op.f('ck_units_unit_state'), type_='check')
        batch.create_check_constraint(op.f('ck_units_unit_state'), _in('state', OLD_UNIT_STATES))
        batch.drop_constraint(op.f('fk_units_batch_id_batches'), type_='foreignkey')
        batch.drop_index(op.f('ix_units_batch_id'))
        batch.drop_column('batch_id')
    with op.batch_alter_table('shipments') as batch:
        batch.drop_constraint(op.f('fk_shipments_reconciled_by_id_users'), type_='foreignkey')
        batch.drop_column('missing')
        batch.drop_column('reconciled_by_id')
        batch.drop_column('reconciled_at')
    with op.batch_alter_table('orders') as batch:
        batch.drop_constraint(op.f('ck_orders_order_state'), type_='check')
        batch.create_check_constraint(op.f('ck_orders_order_state'), _in('state', OLD_ORDER_STATES))
        batch.drop_column('infused_at')
    with op.batch_alter_table('custody_events') as batch:
        batch.drop_constraint(op.f('ck_custody_events_subject'), type_='check')
        batch.drop_constraint(op.f('ck_custody_events_event_to_state'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_event_to_state'), _in('to_state', OLD_UNIT_STATES))
        batch.drop_constraint(op.f('ck_custody_events_event_from_state'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_event_from_state'), _in('from_state', OLD_UNIT_STATES))
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', OLD_ACTIONS))
        batch.drop_constraint(op.f('fk_custody_events_batch_id_batches'), type_='foreignkey')
        batch.drop_index(op.f('ix_custody_events_batch_id'))
        batch.alter_column('to_state', existing_type=sa.VARCHAR(length=32), nullable=False)
        batch.alter_column('unit_id', existing_type=sa.INTEGER(), nullable=False)
        batch.drop_column('reason')
        batch.drop_column('batch_state')
        batch.drop_column('batch_id')
    op.drop_table('batch_inputs')
    op.drop_index(op.f('ix_batches_state'), table_name='batches')
    op.drop_index(op.f('ix_batches_site_id'), table_name='batches')
    op.drop_index(op.f('ix_batches_order_id'), table_name='batches')
    op.drop_table('batches')
