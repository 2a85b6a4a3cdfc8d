"""Accounts as Part 11 expects, and turnaround policies on record.

- login_failures: wrong passwords counted per account and client; reaching the limit blocks
  that client (not the account) for a while. users.failed_logins and users.locked_until, the
  account-wide lock any outsider could trigger, go (dropped in place on SQLite: a batch
  rebuild would lose the identity triggers of users, migration 0007).
- sla_policies: the policy versions become append-only like alarm_rules and signing_keys
  (triggers refuse UPDATE and DELETE, and TRUNCATE on PostgreSQL).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONED = ('sla_policies',)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.create_table('login_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('blocks', sa.Integer(), nullable=False),
    sa.Column('blocked_until', services.db.types.UTCDateTime(), nullable=True),
    sa.Column('last_failure_at', services.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_failures_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures')),
    sa.UniqueConstraint('user_id', 'client', name=op.f('uq_login_failures_user_id_client'))
    )
    for column in ('failed_logins', 'locked_until'):
        if sqlite:
            op.execute(f'ALTER TABLE users DROP COLUMN {column}')  # SQLite 3.35+, in place
        else:
            op.drop_column('users', column)
    for table in VERSIONED:
        if sqlite:
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
    raise NotImplementedError("policy versions and the record of sign-in blocks are kept")
