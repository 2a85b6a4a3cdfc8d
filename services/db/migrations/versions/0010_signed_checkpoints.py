"""Signed checkpoints: each checkpoint's Merkle root and the installation's Ed25519 signature,
and the public keys that have signed (append-only, so that old checkpoints verify after a key
is rotated).

Plain ADD COLUMN on both databases: on SQLite a batch would rebuild audit_checkpoints and drop
its append-only triggers.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.add_column('audit_checkpoints', sa.Column('root', _STR(length=64), nullable=True))
    op.add_column('audit_checkpoints', sa.Column('signature', _STR(length=128), nullable=True))
    op.add_column('audit_checkpoints', sa.Column('key_id', _STR(length=16), nullable=True))
    op.create_table('signing_keys',
    sa.Column('key_id', _STR(length=16), nullable=False),
    sa.Column('algorithm', _STR(length=16), nullable=False),
    sa.Column('public_key', _STR(length=64), nullable=False),
    sa.Column('first_used_at', services.db.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_signing_keys'))
    )
    if sqlite:
        for verb in ('UPDATE', 'DELETE'):
            op.execute(
                f"CREATE TRIGGER signing_keys_no_{verb.lower()} BEFORE {verb} ON signing_keys "
                f"BEGIN SELECT RAISE(ABORT, 'vein2vein: {verb} on signing_keys refused: the "
                "record is append-only'); END"
            )
    else:
        op.execute(
            "CREATE TRIGGER signing_keys_append_only BEFORE UPDATE OR DELETE ON signing_keys "
            "FOR EACH ROW EXECUTE FUNCTION vein2vein_append_only()"
        )
        op.execute(
            "CREATE TRIGGER signing_keys_no_truncate BEFORE TRUNCATE ON signing_keys "
            "FOR EACH STATEMENT EXECUTE FUNCTION vein2vein_append_only()"
        )


def downgrade() -> None:
    raise NotImplementedError("checkpoint signatures are part of the append-only record")
