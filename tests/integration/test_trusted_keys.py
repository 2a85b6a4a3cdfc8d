"""Keys are trusted from configuration, not from the database: `audit verify` takes its keys
from AUDIT_TRUSTED_KEYS and the signing key file; a key only signing_keys knows is a finding,
and so is a checkpoint it signed; old keys stay valid after a rotation while configuration
trusts them; once checkpoints are signed, an unsigned one after them is a finding. Exports
without a key are unsigned, and prove nothing of their origin."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo
from sqlmodel import select

from services import cli
from services.config import Settings
from services.db import UnitOfWork
from services.db.models import AuditCheckpoint
from services.domain.evidence import fingerprint
from services.domain.evidence_check import verify_bundle
from services.operations import audit, keys
from tests.integration.test_audit import tamper
from tests.integration.test_evidence import signed_checkpoint
from tests.world import World


def run(app: Any, *args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), obj=ScriptInfo(create_app=lambda: app))


def factory(app: Any) -> Any:
    return app.extensions["vein2vein"].db.session_factory


def checkpoint_with(app: Any, signer: keys.Signer) -> AuditCheckpoint:
    """A checkpoint signed with ``signer``: what the application's role can do with a key of
    its own (it may insert into signing_keys and audit_checkpoints)."""
    with UnitOfWork(factory(app)) as uow:
        row = audit.checkpoint(uow.session, now=dt.datetime.now(dt.UTC), signer=signer)
        uow.commit()
        uow.session.refresh(row)
        uow.session.expunge(row)
    return row


def test_a_key_only_the_database_knows_and_what_it_signed_are_findings(
    world: World, app_factory: Any, tmp_path: Path
) -> None:
    world.bag_at("collected")
    signed_checkpoint(world)
    assert run(world.app, "audit", "verify").exit_code == 0
    stranger = keys.init_key(tmp_path / "stranger.pem")
    forged = checkpoint_with(world.app, stranger)
    result = run(world.app, "audit", "verify")
    assert result.exit_code == 1
    assert f"key {stranger.key_id} (signing_keys): is not a trusted key" in result.output
    # the same database, with configuration that trusts that key: it verifies
    trusting = app_factory(audit_trusted_keys=stranger.public_key)
    result = run(trusting, "audit", "verify")
    assert result.exit_code == 0, result.output
    # the key's row removed (by someone who wants the checkpoint to pass): still found
    sqlite = world.app.extensions["vein2vein"].db.engine.dialect.name == "sqlite"
    tamper(
        world,
        *(["DROP TRIGGER IF EXISTS signing_keys_no_delete"] if sqlite else []),
        f"DELETE FROM signing_keys WHERE key_id = '{stranger.key_id}'",
    )
    result = run(world.app, "audit", "verify")
    assert result.exit_code == 1
    assert f"checkpoint {forged.id} (audit_checkpoints id {forged.id})" in result.output
    assert f"signed by key {stranger.key_id}, which is not a trusted key" in result.output


def test_a_rotated_key_stays_valid_while_configuration_trusts_it(
    world: World, app_factory: Any, tmp_path: Path
) -> None:
    made = world.bag_at("collected")
    old = keys.load_signer(world.app.extensions["vein2vein"].settings.signing_key_path)
    assert old is None
    signed_checkpoint(world)
    old = keys.load_signer(world.app.extensions["vein2vein"].settings.signing_key_path)
    assert old is not None
    result = run(world.app, "keys", "init", "--rotate")
    assert result.exit_code == 0, result.output
    assert f"add it to AUDIT_TRUSTED_KEYS ({old.public_key})" in result.output
    new = keys.load_signer(world.app.extensions["vein2vein"].settings.signing_key_path)
    assert new is not None
    assert new.key_id != old.key_id
    signed_checkpoint(world)
    result = run(world.app, "audit", "verify")
    assert result.exit_code == 1  # the old key is no longer the key file's, nor configured
    assert f"key {old.key_id} (signing_keys): is not a trusted key" in result.output
    rotated = app_factory(audit_trusted_keys=old.public_key)
    result = run(rotated, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "2 checkpoints" in result.output
    # its bundle lists both keys, is signed by the new one, and verifies pinned to it alone
    response = rotated.test_client().get(
        f"/api/v1/orders/{made['coi']}/evidence", headers=world.headers("care")
    )
    bundle = response.json
    assert {k["key_id"] for k in bundle["installation"]["public_keys"]} == {
        old.key_id,
        new.key_id,
    }
    assert bundle["export_signature"]["key_id"] == new.key_id
    assert verify_bundle(bundle, trusted_keys=[base64.b64decode(new.public_key)]).ok
    pinned_old = verify_bundle(bundle, trusted_keys=[base64.b64decode(old.public_key)])
    assert pinned_old.status == "unproven"
    # keys show: the fingerprint, and which keys of the database are trusted
    result = run(world.app, "keys", "show")
    assert result.exit_code == 0, result.output
    assert fingerprint(base64.b64decode(new.public_key)) in result.output
    assert f"{old.key_id}  Ed25519" in result.output
    assert "NOT TRUSTED" in result.output
    result = run(rotated, "keys", "show")
    assert "NOT TRUSTED" not in result.output
    assert f"trusted (AUDIT_TRUSTED_KEYS): {old.key_id}" in result.output


def test_an_unsigned_checkpoint_after_signed_ones_is_a_finding(world: World) -> None:
    world.bag_at("collected")
    signed_checkpoint(world)
    second = signed_checkpoint(world)
    assert run(world.app, "audit", "verify").exit_code == 0
    tamper(
        world,
        f"UPDATE audit_checkpoints SET signature = NULL, key_id = NULL WHERE id = {second.id}",
    )
    result = run(world.app, "audit", "verify")
    assert result.exit_code == 1
    assert f"checkpoint {second.id}" in result.output
    assert "it is unsigned, but checkpoint" in result.output


def test_no_unsigned_checkpoint_is_taken_once_checkpoints_are_signed(world: World) -> None:
    world.bag_at("collected")
    signed_checkpoint(world)
    key_file = world.app.extensions["vein2vein"].settings.signing_key_path
    key_file.rename(key_file.with_suffix(".away"))
    result = run(world.app, "audit", "checkpoint")
    assert result.exit_code == 1
    assert "[signing_key_missing]" in result.output
    with UnitOfWork(factory(world.app)) as uow:
        assert len(uow.session.exec(select(AuditCheckpoint)).all()) == 1
    key_file.with_suffix(".away").rename(key_file)
    assert run(world.app, "audit", "checkpoint").exit_code == 0
    assert run(world.app, "audit", "verify").exit_code == 0


def test_an_export_without_a_readable_key_is_unsigned_and_proves_nothing(
    world: World, tmp_path: Path
) -> None:
    made = world.bag_at("collected")
    response = world.get("care", f"/api/v1/orders/{made['coi']}/evidence")
    assert response.status_code == 200
    bundle = response.json
    assert "export_signature" not in bundle
    someone = keys.init_key(tmp_path / "any.pem")
    report = verify_bundle(bundle, trusted_keys=[base64.b64decode(someone.public_key)])
    assert report.finding is None
    assert report.status == "unproven"
    assert "carries no export signature" in str(report.unproven)
    # a key file the web process cannot read: still a bundle (unsigned), and said in the log
    key_file = world.app.extensions["vein2vein"].settings.signing_key_path
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("not a key")
    response = world.get("care", f"/api/v1/orders/{made['coi']}/evidence")
    assert response.status_code == 200
    assert "export_signature" not in response.json
    # the command line refuses it rather than export unsigned by accident
    result = run(world.app, "audit", "export", made["coi"])
    assert result.exit_code == 1
    assert "cannot be read" in result.output


def test_the_trusted_keys_setting_takes_keys_and_refuses_anything_else(tmp_path: Path) -> None:
    one = keys.init_key(tmp_path / "one.pem")
    two = keys.init_key(tmp_path / "two.pem")
    settings = Settings(_env_file=None, audit_trusted_keys=f"{one.public_key}, {two.public_key},")
    assert settings.trusted_public_keys == [
        base64.b64decode(one.public_key),
        base64.b64decode(two.public_key),
    ]
    assert Settings(_env_file=None).trusted_public_keys == []
    for wrong in ("not-a-key", base64.b64encode(b"short").decode(), one.public_key + "x"):
        with pytest.raises(ValueError, match="AUDIT_TRUSTED_KEYS: key 2"):
            Settings(_env_file=None, audit_trusted_keys=f"{one.public_key},{wrong}")
