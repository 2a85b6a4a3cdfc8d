"""Local time, alert triage and sites administered from the pages.

- sites: time_zone (an IANA zone, 'UTC' for the sites there are) and managed_by_site_id (the
  site whose admins added it). Plain ADD COLUMN on both databases: a batch would rebuild sites
  on SQLite and drop its identity triggers.
- subscriptions: digest (progress news folded into one message a day).
- notifications: the state held (progress news waiting for its digest) and digest_id (the
  digest it was folded into); notifications has no triggers, so SQLite's rebuild loses none.
- alert_acknowledgements: who acknowledged a critical alert of a site's feed, and when.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0017'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = ('pending', 'delivered', 'dead')
STATES = (*OLD_STATES, 'held')


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.add_column(
        'sites',
        sa.Column(
            'time_zone',
            sqlmodel.sql.sqltypes.AutoString(length=64),
            server_default='UTC',
            nullable=False,
        ),
    )
    if sqlite:
        # SQLite adds a column with its reference in one statement (no ALTER ... ADD CONSTRAINT)
        op.execute(
            'ALTER TABLE sites ADD COLUMN managed_by_site_id INTEGER '
            'CONSTRAINT fk_sites_managed_by_site_id_sites REFERENCES sites (id)'
        )
    else:
        op.add_column('sites', sa.Column('managed_by_site_id', sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f('fk_sites_managed_by_site_id_sites'),
            'sites',
            'sites',
            ['managed_by_site_id'],
            ['id'],
        )
    op.add_column(
        'subscriptions',
        sa.Column('digest', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    with op.batch_alter_table('notifications') as batch:
        batch.add_column(sa.Column('digest_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f('fk_notifications_digest_id_notifications'), 'notifications', ['digest_id'], ['id']
        )
        batch.drop_constraint(op.f('ck_notifications_notification_state'), type_='check')
        batch.create_check_constraint(
            op.f('ck_notifications_notification_state'), _in('state', STATES)
        )
    op.create_table(
        'alert_acknowledgements',
        sa.Column('notification_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('acknowledged_at', services.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['notification_id'],
            ['notifications.id'],
            name=op.f('fk_alert_acknowledgements_notification_id_notifications'),
        ),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_alert_acknowledgements_user_id_users')
        ),
        sa.PrimaryKeyConstraint('notification_id', name=op.f('pk_alert_acknowledgements')),
    )


def downgrade() -> None:
    raise NotImplementedError(
        "held notifications wait for their digest and acknowledgements are who answered an "
        "alarm: neither can be dropped without losing news or its record"
    )
