"""The chain of condition: dry shippers, logger files and their readings, alarm rules, alarms,
and QA's hold.

- shippers, logger_files, temperature_readings, alarm_rules, condition_alarms: new tables; the
  files, readings, rule versions and alarms are records (append-only, like the custody record).
- units: the state on_hold, and held_from (the state a held or quarantined bag left, to which
  QA's release returns it; filled in for the bags quarantined today).
- custody_events: the actions readings, hold, release_hold and reject_hold, the state on_hold,
  and details (what a condition record says, sealed in its hash when present).

On SQLite a changed constraint rebuilds the table, and its triggers go with the old one: those
of units and custody_events are put back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import services.db.types

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNIT_STATES = (
    'collected', 'label_verified', 'cryopreserved', 'packed', 'in_transit', 'delivered',
    'received', 'in_manufacturing', 'quarantined', 'rejected', 'destroyed', 'lost', 'produced',
    'released', 'stored', 'thawed', 'infused',
)
UNIT_STATES = (*OLD_UNIT_STATES, 'on_hold')
OLD_ACTIONS = (
    'enroll', 'collect', 'verify_label', 'cryopreserve', 'pack', 'pickup', 'deliver', 'receive',
    'start_manufacturing', 'release', 'store', 'thaw', 'infuse', 'quarantine', 'reject',
    'destroy', 'report_lost', 'produce', 'batch_status', 'correct',
)
ACTIONS = (*OLD_ACTIONS, 'readings', 'hold', 'release_hold', 'reject_hold')
OLD_SUBJECT = (
    "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL OR action = 'enroll'"
)
SUBJECT = (
    "(unit_id IS NOT NULL AND to_state IS NOT NULL) OR batch_id IS NOT NULL "
    "OR action IN ('enroll', 'readings')"
)
SHIPPER_STATUSES = ('in_service', 'in_use', 'quarantined', 'retired')
ALARM_KINDS = ('instant', 'continuous', 'cumulative', 'gap')
RECORDS = ('logger_files', 'temperature_readings', 'alarm_rules', 'condition_alarms')
IDENTITY_UNITS = "OLD.din IS NOT NEW.din OR OLD.order_id IS NOT NEW.order_id OR OLD.kind IS NOT NEW.kind"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _enum(values: Sequence[str], name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


_UTC = services.db.types.UTCDateTime
_STR = sqlmodel.sql.sqltypes.AutoString


def _sqlite_triggers(create: bool) -> None:
    """The triggers of units (migration 0007) and custody_events (0006), which a SQLite
    rebuild drops with the old table."""
    statements = {
        'custody_events_no_update': (
            "BEFORE UPDATE ON custody_events BEGIN SELECT RAISE(ABORT, 'vein2vein: UPDATE on "
            "custody_events refused: the custody record is append-only'); END"
        ),
        'custody_events_no_delete': (
            "BEFORE DELETE ON custody_events BEGIN SELECT RAISE(ABORT, 'vein2vein: DELETE on "
            "custody_events refused: the custody record is append-only'); END"
        ),
        'units_identity': (
            f"BEFORE UPDATE OF din, order_id, kind ON units WHEN {IDENTITY_UNITS} "
            "BEGIN SELECT RAISE(ABORT, 'vein2vein: an identity in units is never changed'); END"
        ),
        'units_no_delete': (
            "BEFORE DELETE ON units "
            "BEGIN SELECT RAISE(ABORT, 'vein2vein: units are never deleted'); END"
        ),
    }
    for name, body in statements.items():
        op.execute(f"CREATE TRIGGER {name} {body}" if create else f"DROP TRIGGER IF EXISTS {name}")


def _record_triggers(sqlite: bool) -> None:
    for table in RECORDS:
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


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.create_table('shippers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', _STR(length=64), nullable=False),
    sa.Column('model', _STR(length=100), nullable=False),
    sa.Column('hold_time_hours', sa.Float(), nullable=False),
    sa.Column('qualified_until', _UTC(), nullable=False),
    sa.Column('status', _enum(SHIPPER_STATUSES, 'shipper_status'), nullable=False),
    sa.Column('status_reason', _STR(length=500), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', _UTC(), nullable=False),
    sa.Column('updated_at', _UTC(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_shippers_created_by_id_users')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_shippers_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shippers')),
    sa.UniqueConstraint('serial', name=op.f('uq_shippers_serial'))
    )
    op.create_index(op.f('ix_shippers_site_id'), 'shippers', ['site_id'], unique=False)
    op.create_table('logger_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shipment_id', sa.Integer(), nullable=False),
    sa.Column('sha256', _STR(length=64), nullable=False),
    sa.Column('filename', _STR(length=255), nullable=False),
    sa.Column('media_type', _STR(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('devices', sa.JSON(), nullable=False),
    sa.Column('readings', sa.Integer(), nullable=False),
    sa.Column('new_readings', sa.Integer(), nullable=False),
    sa.Column('first_at', _UTC(), nullable=False),
    sa.Column('last_at', _UTC(), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=False),
    sa.Column('uploaded_at', _UTC(), nullable=False),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_logger_files_shipment_id_shipments')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_logger_files_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logger_files')),
    sa.UniqueConstraint('shipment_id', 'sha256', name=op.f('uq_logger_files_shipment_id_sha256'))
    )
    op.create_index(op.f('ix_logger_files_shipment_id'), 'logger_files', ['shipment_id'], unique=False)
    op.create_table('temperature_readings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shipment_id', sa.Integer(), nullable=False),
    sa.Column('device_id', _STR(length=64), nullable=False),
    sa.Column('at', _UTC(), nullable=False),
    sa.Column('value_c', sa.Float(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['logger_files.id'], name=op.f('fk_temperature_readings_file_id_logger_files')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_temperature_readings_shipment_id_shipments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_temperature_readings')),
    sa.UniqueConstraint('shipment_id', 'device_id', 'at', name=op.f('uq_temperature_readings_shipment_id_device_id_at'))
    )
    op.create_index(op.f('ix_temperature_readings_file_id'), 'temperature_readings', ['file_id'], unique=False)
    op.create_table('alarm_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product', _STR(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('limit_c', sa.Float(), nullable=False),
    sa.Column('instant_limit_c', sa.Float(), nullable=False),
    sa.Column('continuous_minutes', sa.Float(), nullable=False),
    sa.Column('cumulative_minutes', sa.Float(), nullable=False),
    sa.Column('gap_minutes', sa.Float(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', _UTC(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_alarm_rules_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarm_rules')),
    sa.UniqueConstraint('product', 'version', name=op.f('uq_alarm_rules_product_version'))
    )
    op.create_table('condition_alarms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shipment_id', sa.Integer(), nullable=False),
    sa.Column('product', _STR(length=64), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('kind', _enum(ALARM_KINDS, 'alarm_kind'), nullable=False),
    sa.Column('device_id', _STR(length=64), nullable=False),
    sa.Column('started_at', _UTC(), nullable=False),
    sa.Column('ended_at', _UTC(), nullable=False),
    sa.Column('minutes', sa.Float(), nullable=False),
    sa.Column('peak_c', sa.Float(), nullable=True),
    sa.Column('description', _STR(length=500), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.Column('raised_at', _UTC(), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['logger_files.id'], name=op.f('fk_condition_alarms_file_id_logger_files')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_condition_alarms_shipment_id_shipments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_condition_alarms')),
    sa.UniqueConstraint('shipment_id', 'product', 'kind', 'device_id', 'started_at', name=op.f('uq_condition_alarms_shipment_id_product_kind_device_id_started_at'))
    )
    op.create_index(op.f('ix_condition_alarms_shipment_id'), 'condition_alarms', ['shipment_id'], unique=False)

    if sqlite:
        _sqlite_triggers(create=False)
    with op.batch_alter_table('units') as batch:
        batch.add_column(sa.Column('held_from', _enum(UNIT_STATES, 'unit_held_from'), nullable=True))
        batch.drop_constraint(op.f('ck_units_unit_state'), type_='check')
        batch.create_check_constraint(op.f('ck_units_unit_state'), _in('state', UNIT_STATES))
    with op.batch_alter_table('custody_events') as batch:
        batch.add_column(sa.Column('details', sa.JSON(), nullable=True))
        batch.drop_constraint(op.f('ck_custody_events_action'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_action'), _in('action', ACTIONS))
        batch.drop_constraint(op.f('ck_custody_events_subject'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_subject'), SUBJECT)
        batch.drop_constraint(op.f('ck_custody_events_event_from_state'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_event_from_state'), _in('from_state', UNIT_STATES))
        batch.drop_constraint(op.f('ck_custody_events_event_to_state'), type_='check')
        batch.create_check_constraint(op.f('ck_custody_events_event_to_state'), _in('to_state', UNIT_STATES))
    if sqlite:
        _sqlite_triggers(create=True)
    _record_triggers(sqlite)

    # a bag quarantined today returns, when QA releases it, to the state its quarantine left
    op.execute("""
        UPDATE units SET held_from = (
            SELECT e.from_state FROM custody_events e
            WHERE e.unit_id = units.id AND e.to_state = 'quarantined'
              AND e.from_state IS NOT NULL AND e.from_state <> 'quarantined'
            ORDER BY e.sequence DESC LIMIT 1
        )
        WHERE state = 'quarantined'
    """)


def downgrade() -> None:
    raise NotImplementedError(
        "logger files, readings and alarms are part of the append-only record"
    )
