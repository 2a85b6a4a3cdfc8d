"""Two indexes that another index already holds: notifications.subscription_id (the first
column of ix_notifications_stream) and deadlines.unit_id (the first of UNIQUE (unit_id, leg)).
Every outbox row and every deadline row paid to keep them up; every lookup they served, the
wider index serves.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_notifications_subscription_id', table_name='notifications')
    op.drop_index('ix_deadlines_unit_id', table_name='deadlines')


def downgrade() -> None:
    op.create_index('ix_deadlines_unit_id', 'deadlines', ['unit_id'])
    op.create_index('ix_notifications_subscription_id', 'notifications', ['subscription_id'])
