"""Every change of configuration at the command line is in the admin log, as a real process on
a real database: who (the operating-system user, "(command line)"), when, before and after,
and never a secret. The tables that hold versions refuse to be rewritten."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.db.models import AdminChange
from services.operations.changelog import operator, record_change
from services.web import create_app
from tests.conftest import _settings
from tests.integration.test_cli import _run_input, cli_env, run  # noqa: F401 - a fixture
from tests.world import World, sign_in

SIGNED_BY_QA = ("--by", "qa@example.org", "--reason", "validation report VR-1")
SIGNED_ACTIONS = {"turnaround policy changed", "alarm rule changed"}
CHANGES = [
    # (arguments, standard input, the action logged, its subject)
    (
        ("site", "add", "MFG-9", "--kind", "manufacturing", "--name", "Mfg", "--fin", "M9999"),
        None,
        "site added",
        "MFG-9",
    ),
    (("site", "add", "TRT-9", "--kind", "treatment", "--name", "T"), None, "site added", "TRT-9"),
    (
        ("user", "add", "nurse@example.org", "--role", "care_team", "--site", "TRT-9"),
        "first long password\n",
        "user added",
        "nurse@example.org",
    ),
    (
        ("user", "password", "nurse@example.org"),
        "second long password\n",
        "password set",
        "nurse@example.org",
    ),
    (("user", "deactivate", "nurse@example.org"), None, "user deactivated", "nurse@example.org"),
    (("user", "activate", "nurse@example.org"), None, "user activated", "nurse@example.org"),
    (
        ("token", "create", "nurse@example.org", "--name", "scanner-3", "--days", "30"),
        None,
        "token created",
        "nurse@example.org: scanner-3",
    ),
    (
        ("token", "revoke", "nurse@example.org", "--name", "scanner-3"),
        None,
        "token revoked",
        "nurse@example.org: scanner-3",
    ),
    (
        ("site", "signing", "TRT-9", "--step", "infuse", "--witness"),
        None,
        "signing rules changed",
        "TRT-9",
    ),
    (("product", "owner", "axi-cel", "--site", "MFG-9"), None, "product owner named", "axi-cel"),
    (
        ("user", "add", "qa@example.org", "--role", "qa", "--site", "MFG-9"),
        "the owners qa password\n",
        "user added",
        "qa@example.org",
    ),
    # a product's settings: changed by QA of its owning site, signed (the signer is on record)
    (
        ("sla", "set", "axi-cel", "--leg", "collection_to_pickup=30", *SIGNED_BY_QA),
        "the owners qa password\n",
        "turnaround policy changed",
        "axi-cel",
    ),
    (
        ("alarm", "set", "axi-cel", "--limit-c", "-160", *SIGNED_BY_QA),
        "the owners qa password\n",
        "alarm rule changed",
        "axi-cel",
    ),
    (
        (
            "shipper",
            "add",
            "LN2-9",
            "--site",
            "MFG-9",
            "--model",
            "CryoCube",
            "--hold-time-hours",
            "120",
            "--qualified-until",
            "2099-01-01",
        ),
        None,
        "shipper.register",
        "LN2-9",
    ),
    (
        ("shipper", "status", "LN2-9", "--set", "quarantined", "--reason", "dropped on the dock"),
        None,
        "shipper.change",
        "LN2-9",
    ),
    (("keys", "init"), None, "signing key made", None),
    (("keys", "init", "--rotate"), None, "signing key rotated", None),
]


def _admin_log(database_url: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    table = AdminChange.__table__  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.select(table).order_by(table.c.id)))
    finally:
        engine.dispose()


# on production's database: the commands write through the same operations on either (CI time)
@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_every_change_at_the_command_line_is_in_the_admin_log(
    cli_env: dict[str, str],  # noqa: F811 - the fixture imported above
    database_url: str,
    tmp_path: Path,
) -> None:
    assert run(cli_env, "db", "upgrade").returncode == 0
    started = dt.datetime.now(dt.UTC)
    printed: list[str] = []
    for args, stdin, _action, _subject in CHANGES:
        if args[:2] == ("user", "password"):
            # an outsider has made this client wait before the password is set anew
            web = create_app(_settings(database_url, tmp_path / "web-var", login_max_failures=2))
            for _ in range(2):
                sign_in(web.test_client(), "nurse@example.org", "not the password")
            web.extensions["vein2vein"].db.engine.dispose()
        if stdin is not None:
            done = _run_input(cli_env, stdin, *args, "--password-stdin")
        else:
            done = run(cli_env, *args)
        assert done.returncode == 0, (args, done.stderr)
        printed.append(done.stdout)
    log = _admin_log(database_url)
    who = operator()
    by_action: dict[str, list[Any]] = {}
    for row in log:
        by_action.setdefault(row.action, []).append(row)
        if row.action == "sign-in blocked":  # the outsider's failures, not the command line
            assert row.actor == "sign-in guard"
            continue
        if row.action in SIGNED_ACTIONS:  # signed by the owner's QA, who is on record
            assert row.actor == "qa@example.org"
            assert row.after["reason"] == "validation report VR-1"
            continue
        assert (row.actor, row.actor_id) == (who, None), row
        assert started - dt.timedelta(seconds=5) <= row.changed_at <= dt.datetime.now(dt.UTC)
        assert row.after is not None or row.before is not None, row
    for _args, _stdin, action, subject in CHANGES:
        assert action in by_action, f"{action} is not in the admin log: {sorted(by_action)}"
        if subject is not None:
            assert any(r.subject.startswith(subject) for r in by_action[action]), action
    assert by_action["user deactivated"][0].after["active"] is False
    assert by_action["user deactivated"][0].before["active"] is True
    (policy,) = by_action["turnaround policy changed"]
    assert policy.after["limits_hours"]["collection_to_pickup"] == 30
    (signing,) = by_action["signing rules changed"]
    assert signing.after["infuse"] is True
    (rotated,) = by_action["signing key rotated"]
    (made,) = by_action["signing key made"]
    assert rotated.before == {"key_id": made.after["key_id"]}
    (unblocked,) = by_action["sign-in unblocked"]
    assert unblocked.before == {"blocked_clients": ["127.0.0.1"]}
    # and not one secret: the passwords, the token, a hash, the private key
    text = repr(log)
    token = printed[[c[0][:2] for c in CHANGES].index(("token", "create"))].strip()
    key = (tmp_path / "var" / "keys" / "checkpoint-ed25519.pem").read_text()
    body = "".join(key.splitlines()[1:-1])
    for secret in (
        "first long password",
        "second long password",
        "the owners qa password",
        token,
        body,
        "$argon2",
    ):
        assert secret not in text
    assert token.startswith("v2v_")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, {"password": "hunter2 hunter2"}),
        ({"user": {"password_hash": "x"}}, None),
        (None, {"tokens": [{"name": "a", "token": "v2v_whatever"}]}),
        (None, {"note": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}),
        (None, {"value": "v2v_" + "A" * 43}),
        (None, {"key": "-----BEGIN PRIVATE KEY-----\nMC4CAQ...\n-----END PRIVATE KEY-----"}),
    ],
)
def test_a_secret_never_reaches_the_admin_log(
    world: World, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    from services.db import UnitOfWork

    with (
        UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow,
        pytest.raises(ValueError, match="holds a secret"),
    ):
        record_change(
            uow.session,
            actor=None,
            action="test",
            subject="x",
            before=before,
            after=after,
            now=dt.datetime.now(dt.UTC),
        )


def test_policy_versions_and_the_admin_log_refuse_update_and_delete(world: World) -> None:
    """Both databases: the triggers refuse even the tables' owner (the PostgreSQL role's own
    refusal, with no grant at all, is in test_app_role.py)."""
    signed = {"reason": "renewed", "signature": world.signature("qa")}
    assert (
        world.post(
            "qa",
            "/api/v1/sla-policies/axi-cel",
            {"limits_hours": {"collection_to_pickup": 30}, **signed},
        ).status_code
        == 201
    )
    engine = world.app.extensions["vein2vein"].db.engine
    for statement in (
        "UPDATE sla_policies SET version = version + 10",
        "DELETE FROM sla_policies",
        "UPDATE admin_changes SET actor = 'someone else'",
        "DELETE FROM admin_changes",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.exec_driver_sql(statement)
