"""The family's status page: share links, their daily views, news marked discussed, and a
phone number for the treatment site.

- sites: phone (the number families call). Plain ADD COLUMN on both databases: a batch would
  rebuild sites on SQLite and drop its identity triggers.
- status_links: a share link of an order (only its token's SHA-256), its expiry, who made and
  revoked it, its first view, and the family's opted-in e-mail notifications.
- status_link_views: views per link and day.
- status_disclosures: news a clinician tells the family first, marked discussed (who, when,
  why).

No custody action is added: the custody_events CHECK is unchanged.

Revision ID: 0020
Revises: 0017
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0020'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'sites', sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
    )
    op.create_table(
        'status_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=False),
        sa.Column('created_at', services.db.types.UTCDateTime(), nullable=False),
        sa.Column('expires_at', services.db.types.UTCDateTime(), nullable=False),
        sa.Column('revoked_at', services.db.types.UTCDateTime(), nullable=True),
        sa.Column('revoked_by_id', sa.Integer(), nullable=True),
        sa.Column('first_viewed_at', services.db.types.UTCDateTime(), nullable=True),
        sa.Column('subscription_id', sa.Integer(), nullable=True),
        sa.Column('notified_stage', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('notified_at', services.db.types.UTCDateTime(), nullable=True),
        sa.Column('notices', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['created_by_id'], ['users.id'], name=op.f('fk_status_links_created_by_id_users')
        ),
        sa.ForeignKeyConstraint(
            ['order_id'], ['orders.id'], name=op.f('fk_status_links_order_id_orders')
        ),
        sa.ForeignKeyConstraint(
            ['revoked_by_id'], ['users.id'], name=op.f('fk_status_links_revoked_by_id_users')
        ),
        sa.ForeignKeyConstraint(
            ['subscription_id'],
            ['subscriptions.id'],
            name=op.f('fk_status_links_subscription_id_subscriptions'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_status_links')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_status_links_token_hash')),
    )
    op.create_index(op.f('ix_status_links_order_id'), 'status_links', ['order_id'], unique=False)
    op.create_table(
        'status_link_views',
        sa.Column('link_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('views', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['link_id'], ['status_links.id'], name=op.f('fk_status_link_views_link_id_status_links')
        ),
        sa.PrimaryKeyConstraint('link_id', 'day', name=op.f('pk_status_link_views')),
    )
    op.create_table(
        'status_disclosures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('discussed_by_id', sa.Integer(), nullable=False),
        sa.Column('discussed_at', services.db.types.UTCDateTime(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ['discussed_by_id'],
            ['users.id'],
            name=op.f('fk_status_disclosures_discussed_by_id_users'),
        ),
        sa.ForeignKeyConstraint(
            ['event_id'],
            ['custody_events.id'],
            name=op.f('fk_status_disclosures_event_id_custody_events'),
        ),
        sa.ForeignKeyConstraint(
            ['order_id'], ['orders.id'], name=op.f('fk_status_disclosures_order_id_orders')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_status_disclosures')),
        sa.UniqueConstraint('event_id', name=op.f('uq_status_disclosures_event_id')),
    )
    op.create_index(
        op.f('ix_status_disclosures_order_id'), 'status_disclosures', ['order_id'], unique=False
    )
    # a disclosure is part of the record: kept, never changed (as 0014's versioned tables)
    table = 'status_disclosures'
    if op.get_bind().dialect.name == 'sqlite':
        for verb in ('UPDATE', 'DELETE'):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'vein2vein: {verb} on {table} refused: the "
                "record is append-only'); END"
            )
    else:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION vein2vein_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION vein2vein_append_only()"
        )


def downgrade() -> None:
    raise NotImplementedError(
        "disclosures say who told a family what and when, and links were handed to families: "
        "neither can be dropped without losing their record"
    )
