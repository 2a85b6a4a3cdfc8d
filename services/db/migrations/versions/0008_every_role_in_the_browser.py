"""Every role in the browser: label prints, QA reviews, the admin log, password changes.

- users: must_change_password (a temporary password is changed at the next sign-in) and
  session_epoch (raised to sign a user out everywhere).
- label_prints, reviews and admin_changes: records, append-only like the custody record
  (triggers refuse UPDATE and DELETE, and TRUNCATE on PostgreSQL).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ('label_prints', 'reviews', 'admin_changes')


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN (no batch): on SQLite a batch would rebuild the table and
    # lose its identity triggers (migration 0007)
    op.add_column('users', sa.Column('must_change_password', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('users', sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0'))
    op.create_table('label_prints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('shipment_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('copy_number', sa.Integer(), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('printed_at', services.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_label_prints_order_id_orders')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_label_prints_shipment_id_shipments')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_label_prints_unit_id_units')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_label_prints_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_prints'))
    )
    op.create_index(op.f('ix_label_prints_order_id'), 'label_prints', ['order_id'], unique=False)
    op.create_index(op.f('ix_label_prints_shipment_id'), 'label_prints', ['shipment_id'], unique=False)
    op.create_index(op.f('ix_label_prints_unit_id'), 'label_prints', ['unit_id'], unique=False)
    op.create_table('reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('correction_id', sa.Integer(), nullable=True),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('printed_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('reviewer_email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('reviewed_at', services.db.types.UTCDateTime(), nullable=False),
    sa.Column('record_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.CheckConstraint("outcome IN ('corrected', 'no_action')", name=op.f('ck_reviews_outcome')),
    sa.CheckConstraint("source IN ('refused_scan', 'custody_event')", name=op.f('ck_reviews_source')),
    sa.ForeignKeyConstraint(['correction_id'], ['custody_events.id'], name=op.f('fk_reviews_correction_id_custody_events')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_reviews_order_id_orders')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_reviews_reviewer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews')),
    sa.UniqueConstraint('hash', name=op.f('uq_reviews_hash')),
    sa.UniqueConstraint('source', 'source_id', name=op.f('uq_reviews_source_source_id'))
    )
    op.create_index(op.f('ix_reviews_order_id'), 'reviews', ['order_id'], unique=False)
    op.create_table('admin_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('changed_at', services.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_admin_changes_actor_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_admin_changes_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_changes'))
    )
    op.create_index(op.f('ix_admin_changes_changed_at'), 'admin_changes', ['changed_at'], unique=False)
    op.create_index(op.f('ix_admin_changes_site_id'), 'admin_changes', ['site_id'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION vein2vein_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION vein2vein_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for verb in ('UPDATE', 'DELETE'):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'vein2vein: {verb} on {table} refused: the "
                    "record is append-only'); END"
                )


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.drop_table(table)
    with op.batch_alter_table('users') as batch:
        batch.drop_column('session_epoch')
        batch.drop_column('must_change_password')
