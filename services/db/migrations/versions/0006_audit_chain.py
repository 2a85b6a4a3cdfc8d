"""The tamper-evident record: hash chains, checkpoints, signatures, corrections, append-only.

Existing custody events and refused scans are chained here, per order, in the order they were
recorded (events by their sequence, refusals between them by time). On PostgreSQL triggers
then refuse UPDATE, DELETE and TRUNCATE on the record tables; SQLite gets the same for UPDATE
and DELETE.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types
from services.domain.audit import GENESIS, UNATTRIBUTED, chain_key, content, link

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ('custody_events', 'refused_scans', 'audit_checkpoints', 'signatures')
OLD_ACTIONS = (
    'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost', 'produce', 'batch_status',
)
ACTIONS = (*OLD_ACTIONS, 'correct')

# the rows as they are at this revision, typed so that their canonical form is the code's
_UTC = services.db.types.UTCDateTime
events = sa.table(
    'custody_events',
    *(sa.column(name) for name in (
        'id', 'order_id', 'sequence', 'unit_id', 'batch_id', 'batch_state', 'reason',
        'corrects_id', 'scan_id', 'action', 'from_state', 'to_state', 'site_id', 'actor_id',
        'custodian_site_id', 'shipment_id', 'review_reason',
    )),
    sa.column('occurred_at', _UTC()),
    sa.column('recorded_at', _UTC()),
    sa.column('needs_review', sa.Boolean()),
    sa.column('chain_position', sa.Integer()),
    sa.column('prev_hash', sa.String()),
    sa.column('hash', sa.String()),
)
refusals = sa.table(
    'refused_scans',
    *(sa.column(name) for name in (
        'id', 'order_id', 'event_id', 'action', 'barcode', 'site_code', 'site_id', 'actor_id',
        'unit_id', 'code', 'detail',
    )),
    sa.column('occurred_at', _UTC()),
    sa.column('recorded_at', _UTC()),
    sa.column('chain_position', sa.Integer()),
    sa.column('prev_hash', sa.String()),
    sa.column('hash', sa.String()),
)
heads = sa.table('chain_heads', sa.column('key'), sa.column('length'), sa.column('head'))


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _chain_existing_records() -> None:
    connection = op.get_bind()
    chains: dict[str, list[tuple[object, int, str, dict]]] = {}
    for row in connection.execute(sa.select(events).order_by(events.c.order_id, events.c.sequence)):
        record = dict(row._mapping)
        chains.setdefault(chain_key(record['order_id']), []).append(
            (record['recorded_at'], 0, 'custody_events', record)
        )
    for row in connection.execute(sa.select(refusals).order_by(refusals.c.id)):
        record = dict(row._mapping)
        chains.setdefault(chain_key(record['order_id']), []).append(
            (record['recorded_at'], 1, 'refused_scans', record)
        )
    for key, items in chains.items():
        if key != UNATTRIBUTED:
            # events keep their sequence; refusals fall between them by the time they came
            ordered_events = [i for i in items if i[2] == 'custody_events']
            others = sorted((i for i in items if i[2] == 'refused_scans'), key=lambda i: (i[0], i[3]['id']))
            merged, e = [], 0
            for refusal in others:
                while e < len(ordered_events) and ordered_events[e][0] <= refusal[0]:
                    merged.append(ordered_events[e]); e += 1
                merged.append(refusal)
            merged.extend(ordered_events[e:])
            items = merged
        prev = GENESIS
        for position, (_at, _rank, table_name, record) in enumerate(items, start=1):
            record['chain_position'] = position
            digest = link(prev, content(table_name, record))
            table = events if table_name == 'custody_events' else refusals
            connection.execute(
                table.update().where(table.c.id == record['id']).values(
                    chain_position=position, prev_hash=prev, hash=digest
                )
            )
            prev = digest
        connection.execute(heads.insert().values(key=key, length=len(items), head=prev))
    if UNATTRIBUTED not in chains:
        connection.execute(heads.insert().values(key=UNATTRIBUTED, length=0, head=GENESIS))


def upgrade() -> None:
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('taken_at', services.db.types.UTCDateTime(), nullable=False),
    sa.Column('heads', sa.JSON(), nullable=False),
    sa.Column('records', sa.Integer(), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_checkpoints_hash'))
    )
    op.create_table('chain_heads',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('head', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_chain_heads'))
    )
    op.create_table('signature_rules',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('step', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('witness_required', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_signature_rules_site_id_sites')),
    sa.PrimaryKeyConstraint('site_id', 'step', name=op.f('pk_signature_rules'))
    )
    op.create_table('signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('signer_id', sa.Integer(), nullable=False),
    sa.Column('printed_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('meaning', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('witness', sa.Boolean(), nullable=False),
    sa.Column('signed_at', services.db.types.UTCDateTime(), nullable=False),
    sa.Column('record_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.CheckConstraint("meaning IN ('performed', 'verified', 'approved')", name=op.f('ck_signatures_meaning')),
    sa.ForeignKeyConstraint(['event_id'], ['custody_events.id'], name=op.f('fk_signatures_event_id_custody_events')),
    sa.ForeignKeyConstraint(['signer_id'], ['users.id'], name=op.f('fk_signatures_signer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signatures')),
    sa.UniqueConstraint('hash', name=op.f('uq_signatures_hash'))
    )
    op.create_index(op.f('ix_signatures_event_id'), 'signatures', ['event_id'], unique=False)
    with op.batch_alter_table('custody_events') as batch:
        batch.add_column(sa.Column('corrects_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('chain_position', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    with op.batch_alter_table('refused_scans') as batch:
        batch.add_column(sa.Column('chain_position', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))

    _chain_existing_records()

    with op.batch_alter_table('custody_events') as batch:
        batch.alter_column('chain_position', existing_type=sa.Integer(), nullable=False)
        batch.alter_column('prev_hash', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch.alter_column('hash', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch.create_index(op.f('ix_custody_events_corrects_id'), ['corrects_id'], unique=False)
        batch.create_unique_constraint(op.f('uq_custody_events_hash'), ['hash'])
        batch.create_unique_constraint(op.f('uq_custody_events_order_id_chain_position'), ['order_id', 'chain_position'])
        batch.create_foreign_key(op.f('fk_custody_events_corrects_id_custody_events'), 'custody_events', ['corrects_id'], ['id'])
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
    with op.batch_alter_table('refused_scans') as batch:
        batch.alter_column('chain_position', existing_type=sa.Integer(), nullable=False)
        batch.alter_column('prev_hash', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch.alter_column('hash', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch.create_unique_constraint(op.f('uq_refused_scans_hash'), ['hash'])

    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
            CREATE FUNCTION vein2vein_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'vein2vein: % on % refused: the custody record is append-only',
                    TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END $$
        """)
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
                    "custody record is append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION vein2vein_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ('update', 'delete'):
                op.execute(f"DROP TRIGGER {table}_no_{verb}")
    with op.batch_alter_table('refused_scans') as batch:
        batch.drop_constraint(op.f('uq_refused_scans_hash'), type_='unique')
        batch.drop_column('hash')
        batch.drop_column('prev_hash')
        batch.drop_column('chain_position')
    with op.batch_alter_table('custody_events') as batch:
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', OLD_ACTIONS))
        batch.drop_constraint(op.f('fk_custody_events_corrects_id_custody_events'), type_='foreignkey')
        batch.drop_constraint(op.f('uq_custody_events_order_id_chain_position'), type_='unique')
        batch.drop_constraint(op.f('uq_custody_events_hash'), type_='unique')
        batch.drop_index(op.f('ix_custody_events_corrects_id'))
        batch.drop_column('hash')
        batch.drop_column('prev_hash')
        batch.drop_column('chain_position')
        batch.drop_column('corrects_id')
    op.drop_index(op.f('ix_signatures_event_id'), table_name='signatures')
    op.drop_table('signatures')
    op.drop_table('signature_rules')
    op.drop_table('chain_heads')
    op.drop_table('audit_checkpoints')
