"""Identity in the chain: records seal the identities they name; identity columns immutable.

- custody_events and refused_scans get ``identity`` (JSON, hashed when present): the COI, the
  DIN and kind, the actor's e-mail and the site codes as they were; the record that opens an
  order's chain (action ``enroll``, sequence 0) also seals a keyed digest of the patient
  reference, the product and the three sites.
- Every existing order gets that opening record now, appended at the end of its chain; since
  its older records sealed no identity, it also lists the bags, actors and site codes they
  name, as they are at this migration.
- signatures get ``signer_email`` (sealed) and the meaning ``witness``; one signature per
  (event, signer, meaning).
- Triggers (PostgreSQL and SQLite) refuse any change of an identity column: orders.coi,
  patient_ref, product and its sites; units.din, order_id, kind; users.email; sites.code,
  kind, and fin once set; and the deletion of orders, units, users and sites.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:10:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types
from services.domain.audit import GENESIS, chain_key, content, link, patient_digest

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = (
    'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost', 'produce', 'batch_status', 'correct',
)
ACTIONS = ('enroll', *OLD_ACTIONS)
OLD_SUBJECT = "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL"
SUBJECT = OLD_SUBJECT + " OR action = 'enroll'"
OLD_MEANINGS = ('performed', 'verified', 'approved')
MEANINGS = (*OLD_MEANINGS, 'witness')
# table -> (columns never changed once written, columns never changed once set)
IDENTITY = {
    'orders': (
        ('coi', 'patient_ref', 'product', 'collection_site_id', 'manufacturing_site_id',
         'treatment_site_id'),
        (),
    ),
    'units': (('din', 'order_id', 'kind'), ()),
    'users': (('email',), ()),
    'sites': (('code', 'kind'), ('fin',)),
}
NOTE = 'identity sealed by migration 0007: the order was recorded before identities were sealed'

_UTC = services.db.types.UTCDateTime
events = sa.table(
    'custody_events',
    *(sa.column(name) for name in (
        'id', 'order_id', 'sequence', 'unit_id', 'batch_id', 'batch_state', 'reason',
        'corrects_id', 'scan_id', 'action', 'from_state', 'to_state', 'site_id', 'actor_id',
        'custodian_site_id', 'shipment_id', 'review_reason', 'prev_hash', 'hash',
    )),
    sa.column('occurred_at', _UTC()),
    sa.column('recorded_at', _UTC()),
    sa.column('needs_review', sa.Boolean()),
    sa.column('chain_position', sa.Integer()),
    sa.column('identity', sa.JSON()),
)
refusals = sa.table(
    'refused_scans', sa.column('order_id'), sa.column('actor_id'), sa.column('site_id')
)
orders = sa.table(
    'orders',
    *(sa.column(name) for name in (
        'id', 'coi', 'patient_ref', 'product', 'collection_site_id', 'manufacturing_site_id',
        'treatment_site_id', 'created_by_id',
    )),
    sa.column('created_at', _UTC()),
)
units = sa.table('units', sa.column('id'), sa.column('order_id'), sa.column('din'), sa.column('kind'))
users = sa.table('users', sa.column('id'), sa.column('email'), sa.column('site_id'))
sites = sa.table('sites', sa.column('id'), sa.column('code'), sa.column('fin'))
heads = sa.table('chain_heads', sa.column('key'), sa.column('length'), sa.column('head'))


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _seal_existing_orders() -> None:
    connection = op.get_bind()
    sealed_at = dt.datetime.now(dt.UTC)
    email = dict(connection.execute(sa.select(users.c.id, users.c.email)).all())
    user_site = dict(connection.execute(sa.select(users.c.id, users.c.site_id)).all())
    site = {row.id: row for row in connection.execute(sa.select(sites))}
    for order in connection.execute(sa.select(orders).order_by(orders.c.id)).all():
        named = connection.execute(
            sa.select(events.c.actor_id, events.c.site_id, events.c.custodian_site_id)
            .where(events.c.order_id == order.id)
        ).all()
        refused = connection.execute(
            sa.select(refusals.c.actor_id, refusals.c.site_id).where(refusals.c.order_id == order.id)
        ).all()
        actor_ids = {row.actor_id for row in named} | {row.actor_id for row in refused}
        site_ids = {row.site_id for row in named} | {row.custodian_site_id for row in named}
        site_ids |= {row.site_id for row in refused if row.site_id is not None}
        bags = connection.execute(
            sa.select(units.c.id, units.c.din, units.c.kind)
            .where(units.c.order_id == order.id)
            .order_by(units.c.id)
        ).all()
        enroller_site = site[user_site[order.created_by_id]]
        three = (order.collection_site_id, order.manufacturing_site_id, order.treatment_site_id)
        identity = {
            'coi': order.coi,
            'din': None,
            'kind': None,
            'actor': email[order.created_by_id],
            'site': enroller_site.code,
            'custodian': enroller_site.code,
            'order': {
                'patient': patient_digest(order.coi, order.patient_ref),
                'product': order.product,
                'sites': [[site[i].code, site[i].fin] for i in three],
                'units': {str(bag.id): [bag.din, bag.kind] for bag in bags},
                'actors': {str(i): email[i] for i in sorted(actor_ids)},
                'site_codes': {str(i): site[i].code for i in sorted(site_ids)},
            },
        }
        key = chain_key(order.id)
        head = connection.execute(sa.select(heads).where(heads.c.key == key)).first()
        length, prev = (head.length, head.head) if head else (0, GENESIS)
        record = {
            'order_id': order.id,
            'chain_position': length + 1,
            'sequence': 0,
            'unit_id': None,
            'batch_id': None,
            'batch_state': None,
            'reason': NOTE,
            'corrects_id': None,
            'scan_id': None,
            'action': 'enroll',
            'from_state': None,
            'to_state': None,
            'site_id': enroller_site.id,
            'actor_id': order.created_by_id,
            'custodian_site_id': enroller_site.id,
            'shipment_id': None,
            'occurred_at': order.created_at,
            'recorded_at': sealed_at,
            'needs_review': False,
            'review_reason': None,
            'identity': identity,
        }
        digest = link(prev, content('custody_events', record))
        connection.execute(events.insert().values(**record, prev_hash=prev, hash=digest))
        if head:
            connection.execute(
                heads.update().where(heads.c.key == key).values(length=length + 1, head=digest)
            )
        else:
            connection.execute(heads.insert().values(key=key, length=1, head=digest))


def _append_only_triggers(table: str, create: bool) -> None:
    """SQLite rebuilds a table to change its constraints; its triggers go with the old one."""
    for verb in ('UPDATE', 'DELETE'):
        name = f"{table}_no_{verb.lower()}"
        if create:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'vein2vein: {verb} on {table} refused: the "
                "custody record is append-only'); END"
            )
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _changed(columns: Sequence[str], once_set: Sequence[str], distinct: str) -> str:
    tests = [f"OLD.{c} {distinct} NEW.{c}" for c in columns]
    tests += [f"(OLD.{c} IS NOT NULL AND OLD.{c} {distinct} NEW.{c})" for c in once_set]
    return " OR ".join(tests)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for table in ('custody_events', 'signatures'):
            _append_only_triggers(table, create=False)
    with op.batch_alter_table('custody_events') as batch:
        batch.add_column(sa.Column('identity', sa.JSON(), nullable=True))
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
        batch.drop_constraint(op.f('ck_custody_events_subject'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_subject'), SUBJECT)
    with op.batch_alter_table('refused_scans') as batch:
        batch.add_column(sa.Column('identity', sa.JSON(), nullable=True))
    with op.batch_alter_table('signatures') as batch:
        batch.add_column(
            sa.Column('signer_email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True)
        )
        batch.drop_constraint(op.f('ck_signatures_meaning'), type_='check')
        batch.create_check_constraint(op.f('ck_signatures_meaning'), _in('meaning', MEANINGS))
        batch.create_unique_constraint(
            op.f('uq_signatures_event_id_signer_id_meaning'), ['event_id', 'signer_id', 'meaning']
        )
    if sqlite:
        for table in ('custody_events', 'signatures'):
            _append_only_triggers(table, create=True)

    _seal_existing_orders()

    if sqlite:
        for table, (columns, once_set) in IDENTITY.items():
            watched = ", ".join((*columns, *once_set))
            op.execute(
                f"CREATE TRIGGER {table}_identity BEFORE UPDATE OF {watched} ON {table} "
                f"WHEN {_changed(columns, once_set, 'IS NOT')} "
                f"BEGIN SELECT RAISE(ABORT, 'vein2vein: an identity in {table} is never "
                "changed'); END"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'vein2vein: {table} are never deleted'); END"
            )
    else:
        op.execute("""
            CREATE FUNCTION vein2vein_identity_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'vein2vein: % on % refused: an identity is never changed',
                    TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END $$
        """)
        for table, (columns, once_set) in IDENTITY.items():
            watched = ", ".join((*columns, *once_set))
            op.execute(
                f"CREATE TRIGGER {table}_identity BEFORE UPDATE OF {watched} ON {table} "
                f"FOR EACH ROW WHEN ({_changed(columns, once_set, 'IS DISTINCT FROM')}) "
                "EXECUTE FUNCTION vein2vein_identity_immutable()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION vein2vein_identity_immutable()"
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for table in IDENTITY:
        if sqlite:
            op.execute(f"DROP TRIGGER {table}_identity")
            op.execute(f"DROP TRIGGER {table}_no_delete")
        else:
            op.execute(f"DROP TRIGGER {table}_identity ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_delete ON {table}")
    if not sqlite:
        op.execute("DROP FUNCTION vein2vein_identity_immutable()")
    raise NotImplementedError(
        "the sealed identities and the enrolment records are part of the append-only record"
    )
