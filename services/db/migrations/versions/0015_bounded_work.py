"""Bounded work: refusals that name no bag their scanner may see get a chain per site (the
site whose chain holds them), refusals are counted per user over a window through an index,
and a webhook's signing secret is kept encrypted (a Fernet token is longer than the secret).

Plain ADD COLUMN and CREATE INDEX on refused_scans (on SQLite a batch would rebuild the table
and drop its append-only triggers). The secret's column is widened; SQLite does not hold
VARCHAR lengths, so its batch (subscriptions has no triggers) only records the new type.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite's own ADD COLUMN takes the reference inline (alembic would ask for a batch)
        op.execute(
            'ALTER TABLE refused_scans ADD COLUMN chain_site_id INTEGER '
            'CONSTRAINT fk_refused_scans_chain_site_id_sites REFERENCES sites (id)'
        )
    else:
        op.add_column('refused_scans', sa.Column('chain_site_id', sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f('fk_refused_scans_chain_site_id_sites'),
            'refused_scans',
            'sites',
            ['chain_site_id'],
            ['id'],
        )
    op.create_index(
        op.f('ix_refused_scans_chain_site_id'), 'refused_scans', ['chain_site_id']
    )
    op.create_index(
        'ix_refused_scans_actor_recorded', 'refused_scans', ['actor_id', 'recorded_at']
    )
    with op.batch_alter_table('subscriptions') as batch:
        batch.alter_column(
            'secret',
            existing_type=_STR(length=100),
            type_=_STR(length=255),
            existing_nullable=True,
        )


def downgrade() -> None:
    raise NotImplementedError("refusals' chains are part of the append-only record")
