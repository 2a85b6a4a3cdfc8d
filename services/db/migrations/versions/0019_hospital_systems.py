"""Into the hospital's systems: single sign-on and its signatures.

- sites: local_passwords (true for the sites there are; off: single sign-on only). Plain ADD
  COLUMN on both databases: a batch would rebuild sites on SQLite and drop its triggers.
- users: oidc_issuer, oidc_subject (the identity provider's person, bound at their first
  single sign-on), unique together. Plain ADD COLUMN and CREATE INDEX.
- signing_tickets: a signature's re-authentication at the identity provider, used once.
- orders: merged_patient_ref (the surviving reference after a patient record merge; not an
  identity the enrolment sealed, so outside the orders_identity trigger).
- custody_events: the action patient_merge, an order-level record (action and subject CHECKs
  rebuilt; on SQLite the rebuild drops the append-only triggers, which are put back).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = (
    'enroll', 'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost', 'produce', 'batch_status', 'correct', 'unpack', 'readings', 'hold',
    'release_hold', 'reject_hold',
    # the vein-to-vein plan's (0018)
    'plan_book', 'plan_confirm', 'plan_move', 'plan_cancel', 'plan_expire', 'lymphodepletion',
    'not_infused',
)
ACTIONS = (*OLD_ACTIONS, 'patient_merge')
OLD_SUBJECT = (
    "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL "
    "OR action IN ('enroll', 'readings', 'plan_book', 'plan_confirm', 'plan_move', "
    "'plan_cancel', 'plan_expire', 'lymphodepletion', 'not_infused')"
)
SUBJECT = (
    "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL "
    "OR action IN ('enroll', 'readings', 'plan_book', 'plan_confirm', 'plan_move', "
    "'plan_cancel', 'plan_expire', 'lymphodepletion', 'not_infused', 'patient_merge')"
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _sqlite_append_only(create: bool) -> None:
    """custody_events' two triggers on SQLite (0006, 0012), which a rebuild drops."""
    for verb in ('UPDATE', 'DELETE'):
        name = f"custody_events_no_{verb.lower()}"
        if create:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {verb} ON custody_events BEGIN SELECT "
                f"RAISE(ABORT, 'vein2vein: {verb} on custody_events refused: the custody "
                "record is append-only'); END"
            )
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.add_column(
        'sites',
        sa.Column('local_passwords', sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.add_column(
        'users', sa.Column('oidc_issuer', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
    )
    op.add_column(
        'users',
        sa.Column('oidc_subject', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    )
    op.create_index(
        'ix_users_oidc_identity', 'users', ['oidc_issuer', 'oidc_subject'], unique=True
    )
    op.create_table(
        'signing_tickets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('witness', sa.Boolean(), nullable=False),
        sa.Column('requested_at', services.db.types.UTCDateTime(), nullable=False),
        sa.Column('authenticated_at', services.db.types.UTCDateTime(), nullable=False),
        sa.Column('expires_at', services.db.types.UTCDateTime(), nullable=False),
        sa.Column('consumed_at', services.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_signing_tickets_user_id_users')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_signing_tickets')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_signing_tickets_token_hash')),
    )
    op.create_index(
        op.f('ix_signing_tickets_user_id'), 'signing_tickets', ['user_id'], unique=False
    )
    op.add_column(
        'orders',
        sa.Column(
            'merged_patient_ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
        ),
    )
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        _sqlite_append_only(create=False)
    with op.batch_alter_table('custody_events') as batch:
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
        batch.drop_constraint(op.f('ck_custody_events_subject'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_subject'), SUBJECT)
    if sqlite:
        _sqlite_append_only(create=True)


def downgrade() -> None:
    raise NotImplementedError(
        "a signing ticket is the record of a signature's re-authentication, and a user's "
        "identity at the provider is who signed: neither can be dropped without losing it"
    )
