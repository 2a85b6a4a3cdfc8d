"""A random salt per order for the identities its enrolment seals.

Orders recorded from now on seal ``HMAC(identity_salt, patient_ref)`` rather than
``HMAC(COI, patient_ref)``: the COI is in every export, so anyone holding an export could test
guesses of a short reference against the old digest. The salt is made when the order is and
never shown to a reader who may not see the patient reference. Orders recorded before keep
their NULL salt and their COI-keyed seal (their records cannot be re-hashed); the seal of a new
order names its construction (``identity.order.digest``).

The salt, once set, is never changed (a trigger, like the other identity columns of orders;
the application's role has no UPDATE on it). Plain ADD COLUMN on both databases: on SQLite a
batch would rebuild orders and drop its identity triggers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.add_column(
        'orders',
        sa.Column('identity_salt', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    )
    if sqlite:
        op.execute(
            "CREATE TRIGGER orders_identity_salt BEFORE UPDATE OF identity_salt ON orders "
            "WHEN OLD.identity_salt IS NOT NULL AND OLD.identity_salt IS NOT NEW.identity_salt "
            "BEGIN SELECT RAISE(ABORT, 'vein2vein: an identity in orders is never changed'); END"
        )
    else:
        op.execute(
            "CREATE TRIGGER orders_identity_salt BEFORE UPDATE OF identity_salt ON orders "
            "FOR EACH ROW WHEN (OLD.identity_salt IS NOT NULL "
            "AND OLD.identity_salt IS DISTINCT FROM NEW.identity_salt) "
            "EXECUTE FUNCTION vein2vein_identity_immutable()"
        )


def downgrade() -> None:
    raise NotImplementedError(
        "the salts key digests sealed in the append-only record: without them those orders' "
        "patient references could no longer be checked"
    )
