"""The database role the application runs as in production: exactly the grants it needs.

Migrations run as the owner of the tables. The application connects as another role that can
read and append to the record but never change or remove it: no UPDATE, DELETE or TRUNCATE on
the record tables, no UPDATE of an identity column, no DDL (it owns nothing), and, not being a
superuser, it cannot SET session_replication_role to switch the triggers off.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

# append-only: the application may read and insert, nothing else (the record, and the tables
# that keep versions of settings: a new version is a new row, and the admin log says who)
RECORD_TABLES = frozenset(
    {
        "custody_events",
        "refused_scans",
        "signatures",
        "audit_checkpoints",
        "label_prints",
        "reviews",
        "admin_changes",
        "logger_files",
        "temperature_readings",
        "condition_alarms",
        "sla_policies",
        "alarm_rules",
        "signing_keys",
        "status_disclosures",
    }
)
# rows the application updates, but never in these columns (see migration 0007's triggers)
IDENTITY_COLUMNS: dict[str, frozenset[str]] = {
    "orders": frozenset(
        {
            "id",
            "coi",
            "patient_ref",
            "product",
            "collection_site_id",
            "manufacturing_site_id",
            "treatment_site_id",
            "created_by_id",
            "created_at",
            "identity_salt",
        }
    ),
    "units": frozenset({"id", "din", "order_id", "kind", "created_at"}),
    "users": frozenset({"id", "email", "created_at"}),
    "sites": frozenset({"id", "code", "kind", "created_at"}),
}
READ_ONLY_TABLES = frozenset({"alembic_version"})
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_role_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r}: a role name is lower-case letters, digits and '_'")
    return name


def grant_app_role(connection: Connection, name: str, password: str | None) -> list[str]:
    """Create (or bring up to date) the application's role; returns the statements run.

    Run it again after every migration: tables added since get their grants, and nothing more
    than these grants survives (everything is revoked first)."""
    if connection.dialect.name != "postgresql":
        raise ValueError("application roles are a PostgreSQL matter; SQLite has no roles")
    role = check_role_name(name)
    preparer = connection.dialect.identifier_preparer
    quoted = preparer.quote(role)
    exists = connection.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": role}
    ).first()
    statements: list[str] = []

    def run(sql: str, **params: str) -> None:
        connection.execute(sa.text(sql), params)
        statements.append(sql)

    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    if not exists:
        run(f"CREATE ROLE {quoted} {attributes}")
    else:
        run(f"ALTER ROLE {quoted} {attributes}")
    if password is not None:
        # a literal, not a bind parameter: DDL takes none; quoted by the dialect's own rules
        literal = "'" + password.replace("'", "''") + "'"
        connection.exec_driver_sql(f"ALTER ROLE {quoted} PASSWORD {literal}")
        statements.append(f"ALTER ROLE {quoted} PASSWORD '...'")
    database = preparer.quote(connection.execute(sa.text("SELECT current_database()")).scalar_one())
    run(f"GRANT CONNECT ON DATABASE {database} TO {quoted}")
    run(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    run(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}")
    run(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}")
    tables = connection.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    ).scalars()
    for table in tables:
        name = preparer.quote(table)
        if table in READ_ONLY_TABLES:
            run(f"GRANT SELECT ON {name} TO {quoted}")
        elif table in RECORD_TABLES:
            run(f"GRANT SELECT, INSERT ON {name} TO {quoted}")
        elif table in IDENTITY_COLUMNS:
            columns = connection.execute(
                sa.text(
                    "SELECT column_name FROM information_schema.columns WHERE "
                    "table_schema = 'public' AND table_name = :table ORDER BY ordinal_position"
                ),
                {"table": table},
            ).scalars()
            changeable = [c for c in columns if c not in IDENTITY_COLUMNS[table]]
            updates = ", ".join(preparer.quote(c) for c in changeable)
            run(f"GRANT SELECT, INSERT ON {name} TO {quoted}")
            if updates:
                run(f"GRANT UPDATE ({updates}) ON {name} TO {quoted}")
        else:
            run(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {quoted}")
    run(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    return statements


class PrivilegedRole(RuntimeError):
    """The production application connected as a role that could rewrite the record."""


# who we are, and whether we could switch the triggers off (a superuser) or drop them (the
# owner of a table, or a member of the owner's role)
_WHO_AM_I = """
SELECT current_user, r.rolsuper,
       (SELECT string_agg(DISTINCT t.tableowner, ', ') FROM pg_tables t
         WHERE t.schemaname = 'public' AND pg_has_role(current_user, t.tableowner, 'MEMBER'))
  FROM pg_roles r WHERE r.rolname = current_user
"""
APP_ROLE_COMMAND = (
    "printf '%s\\n' \"$APP_DB_PASSWORD\" | vein2vein db app-role vein2vein_app --password-stdin"
)


def privilege_problem(user: str, superuser: bool, owners: str | None) -> str | None:
    """Why a production application must not run as this role, with the way out; or None."""
    if superuser:
        why = f"{user} is a superuser: it can switch the record's append-only triggers off"
    elif owners:
        why = (
            f"{user} owns the tables (or is a member of their owner, {owners}): it can drop "
            "the record's append-only triggers"
        )
    else:
        return None
    return (
        f"APP_ENV=production refuses to run as PostgreSQL role {user}: {why}. Connect as the "
        "application's own role instead: as the owner of the tables, after `vein2vein db "
        f"upgrade`, run\n    {APP_ROLE_COMMAND}\nand set DATABASE_URL=postgresql://"
        "vein2vein_app:PASSWORD@HOST:5432/DATABASE (docker compose does both)."
    )


def refuse_privileged_role(engine: sa.Engine) -> None:
    """For a production application: check the role ``engine`` connects as, now (so a wrong
    DATABASE_URL stops the start-up with the way out) and, should the database be unreachable
    now, on its first connection. SQLite has no roles: nothing to check."""
    if engine.dialect.name != "postgresql":
        return

    def check(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_WHO_AM_I)
            user, superuser, owners = cursor.fetchone()
        finally:
            cursor.close()
            dbapi_connection.rollback()
        problem = privilege_problem(user, superuser, owners)
        if problem:
            raise PrivilegedRole(problem)

    # first_connect runs again on the next connection for as long as it raises
    event.listen(engine, "first_connect", check)
    try:
        engine.connect().close()
    except sa.exc.OperationalError as error:
        log.warning("the database role is checked when the database answers: %s", error.orig)
