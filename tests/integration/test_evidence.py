"""The record as documents: the chain-of-custody report read back with poppler's pdftotext,
the evidence bundle verified with no database (in a fresh virtualenv too), signed checkpoints,
and a witness's copy that catches a database rewritten to agree with itself."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask.cli import ScriptInfo
from sqlmodel import select

from services import cli
from services.db import UnitOfWork
from services.db.models import AuditCheckpoint
from services.domain.audit import canonical_time, checkpoint_content, link
from services.domain.evidence import fingerprint, sign, sign_bundle, statement
from services.domain.evidence_check import verify_bundle
from services.operations import audit, keys
from services.operations.report import report_data
from tests.conftest import _service_missing
from tests.integration.test_audit import tamper
from tests.integration.test_epcis import whole_loop
from tests.integration.test_notifications import deliver_due, subscribe
from tests.receivers import webhook_receiver
from tests.relink import relink_statements
from tests.world import World

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ROOT = Path(__file__).resolve().parents[2]


def poppler() -> None:
    for tool in ("pdftotext", "pdftoppm"):
        if shutil.which(tool) is None:
            _service_missing("poppler-utils", f"{tool} is not on PATH")


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftotext", "-layout", str(source), str(tmp_path / "report.txt")], check=True)
    return (tmp_path / "report.txt").read_text()


def pdf_first_page(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "first.pdf"
    source.write_bytes(pdf)
    target = tmp_path / "first.txt"
    subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(source), str(target)], check=True)
    return " ".join(target.read_text().split())


def session_factory(world: World) -> Any:
    return world.app.extensions["vein2vein"].db.session_factory


def signed_checkpoint(world: World) -> AuditCheckpoint:
    """What the beat does every CHECKPOINT_INTERVAL_SECONDS, with the installation's key."""
    path = world.app.extensions["vein2vein"].settings.signing_key_path
    signer = keys.load_signer(path) or keys.init_key(path)
    with UnitOfWork(session_factory(world)) as uow:
        row = audit.checkpoint(uow.session, now=dt.datetime.now(dt.UTC), signer=signer)
        uow.commit()
        uow.session.refresh(row)
        uow.session.expunge(row)
    return row


def run_cli(app: Any, *args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), obj=ScriptInfo(create_app=lambda: app))


# the report


def test_the_report_holds_every_bag_event_and_signature_and_is_the_same_bytes_twice(
    world: World, backend: str, tmp_path: Path
) -> None:
    poppler()
    coi, din = whole_loop(world)
    signed_checkpoint(world)
    response = world.get("care", f"/api/v1/orders/{coi}/report.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    pdf = response.data
    assert pdf.startswith(b"%PDF-")
    # the same record gives the same bytes
    assert world.get("care", f"/api/v1/orders/{coi}/report.pdf").data == pdf
    text = pdf_text(pdf, tmp_path)
    flat = " ".join(text.split())

    with UnitOfWork(session_factory(world)) as uow:
        data = report_data(uow.session, actor=None, coi=coi)
    dins = [row[0] for row in data.units]
    assert din in dins
    assert len(dins) >= 2  # the apheresis bag and the product
    for each in dins:
        assert each in flat, each
    assert data.coi_readable in flat
    timeline = world.get("care", f"/api/v1/orders/{coi}/events").json["events"]
    assert len(data.events) == len(timeline)
    rows = [line.split() for line in text.splitlines()]
    sequences = {int(r[0]) for r in rows if len(r) > 3 and r[0].isdigit() and r[1][:2] == "20"}
    assert sequences == {e["sequence"] for e in timeline}  # every event has its row
    for event in data.events:
        assert f"{event.occurred_at:%Y-%m-%d %H:%M:%S}" in flat  # the scanner's clock
        assert f"{event.recorded_at:%Y-%m-%d %H:%M:%S}" in flat  # the server's
    for action in ("collect", "pickup", "deliver", "receive", "infuse", "release hold", "hold"):
        assert action in flat, action
    # corrections beside what they correct
    assert "corrected by #" in flat
    assert "corrects #3" in flat
    # every signature with its printed name, date and time, and meaning
    assert data.signatures
    for signature in data.signatures:
        assert signature.meaning in flat
        assert signature.printed_name in flat
        assert f"{signature.signed_at:%Y-%m-%d %H:%M:%S}" in flat
    assert "VERIFIED" in flat
    assert data.chain_head in flat
    # page 1: the key that signs the bundles, its fingerprint and how to verify one
    signer = keys.load_signer(world.app.extensions["vein2vein"].settings.signing_key_path)
    assert signer is not None
    first = pdf_first_page(pdf, tmp_path)
    assert signer.key_id in first
    assert fingerprint(base64.b64decode(signer.public_key)) in first
    assert "python -m services.bundle" in first
    assert "--public-key KEY" in first
    assert "page 1 of" in flat
    pages = int(flat.split("page 1 of ")[1].split()[0])
    assert f"page {pages} of {pages}" in flat
    # the care team's site sees the patient reference; the collection site does not
    assert "PAT-LOOP" in flat
    other = pdf_text(world.get("op", f"/api/v1/orders/{coi}/report.pdf").data, tmp_path)
    assert "PAT-LOOP" not in other
    assert "not shown to this site" in " ".join(other.split())
    # page 1, as a person sees it
    ARTIFACTS.mkdir(exist_ok=True)
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(source),
         str(ARTIFACTS / f"report-page1-{backend}")],
        check=True,
    )  # fmt: skip
    assert (ARTIFACTS / f"report-page1-{backend}.png").stat().st_size > 10_000
    # another network's care team gets nothing
    assert world.get("care2", f"/api/v1/orders/{coi}/report.pdf").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_cli_writes_the_same_report(app: Any, world: World, tmp_path: Path) -> None:
    unit = world.bag_at("receive")
    target = tmp_path / "coc.pdf"
    result = run_cli(app, "report", unit["coi"], "-o", str(target))
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.pdf"
    assert run_cli(app, "report", unit["coi"], "-o", str(again)).exit_code == 0
    assert target.read_bytes() == again.read_bytes()
    assert run_cli(app, "report", "CH-NOT-A-COI", "-o", str(again)).exit_code != 0


# the evidence bundle


def exported(world: World, coi: str, who: str = "care") -> dict[str, Any]:
    response = world.get(who, f"/api/v1/orders/{coi}/evidence")
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def verify_file(app: Any, bundle: dict[str, Any], tmp_path: Path, *keys_: str) -> Any:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    options = [item for key in keys_ for item in ("--public-key", key)]
    return run_cli(app, "audit", "verify", "--bundle", str(path), *options)


def test_a_bundle_verifies_offline_and_names_what_was_changed_removed_or_re_signed(
    world: World, tmp_path: Path
) -> None:
    coi, _din = whole_loop(world)
    first = signed_checkpoint(world)
    world.scan("care", "nothing-we-know", "receive", "TRT-1")  # the other chains move on
    second = signed_checkpoint(world)
    assert first.signature
    assert second.signature
    assert first.root != second.root
    bundle = exported(world, coi)
    assert bundle["format"] == "vein2vein-evidence/2"
    assert [c["id"] for c in bundle["checkpoints"]] == [first.id, second.id]
    published = world.get("care", "/api/v1/keys").json["keys"]
    assert [k["public_key"] for k in bundle["installation"]["public_keys"]] == [
        k["public_key"] for k in published
    ]
    key = published[0]["public_key"]
    assert bundle["export_signature"]["key_id"] == published[0]["key_id"]
    records = bundle["chain"]["records"]
    assert len(records) == bundle["chain"]["head"][0] > 20
    assert bundle["signatures"]

    result = verify_file(world.app, bundle, tmp_path, key)
    assert result.exit_code == 0, result.output
    assert f"{len(records)} records" in result.output
    assert "2 signed checkpoints" in result.output
    assert f"signed by key {published[0]['key_id']}" in result.output

    # without a key pinned from elsewhere, the same bundle proves nothing of its origin
    result = verify_file(world.app, bundle, tmp_path)
    assert result.exit_code == 3, result.output
    assert "ORIGIN UNPROVEN: no trusted key was given" in result.output

    # an edited record: named by its position (with or without the key)
    edited = copy.deepcopy(bundle)
    edited["chain"]["records"][5]["content"]["site_id"] = 999
    result = verify_file(world.app, edited, tmp_path, key)
    assert result.exit_code == 1
    assert f"record {records[5]['position']} of order:" in result.output, result.output
    assert "edited" in result.output

    # a removed record: the next one no longer links
    removed = copy.deepcopy(bundle)
    del removed["chain"]["records"][7]
    result = verify_file(world.app, removed, tmp_path, key)
    assert result.exit_code == 1
    assert f"record {records[7]['position']} of order:" in result.output, result.output
    assert "removed" in result.output

    # two records swapped
    swapped = copy.deepcopy(bundle)
    chain = swapped["chain"]["records"]
    chain[3], chain[4] = chain[4], chain[3]
    result = verify_file(world.app, swapped, tmp_path, key)
    assert result.exit_code == 1
    assert "record 4 of order:" in result.output, result.output

    # the tail cut (with the signature of the last record, a signed correction): the head the
    # bundle claims gives it away
    cut = copy.deepcopy(bundle)
    last = cut["chain"]["records"].pop()
    cut["signatures"] = [s for s in cut["signatures"] if s["record_hash"] != last["hash"]]
    result = verify_file(world.app, cut, tmp_path, key)
    assert result.exit_code == 1
    assert "records were removed" in result.output, result.output

    # a signature's meaning changed
    resigned_meaning = copy.deepcopy(bundle)
    resigned_meaning["signatures"][0]["content"]["meaning"] += " (changed)"
    result = verify_file(world.app, resigned_meaning, tmp_path, key)
    assert result.exit_code == 1
    assert "signature" in result.output, result.output

    # a rewritten record, its chain recomputed, and the checkpoints re-signed with another key
    forger = Ed25519PrivateKey.generate()
    forged_key = base64.b64encode(
        forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()
    forged = forge(bundle, forger, forged_key, keep_key_list=True)
    result = verify_file(world.app, forged, tmp_path, key)
    assert result.exit_code == 1
    assert f"checkpoint {first.id}" in result.output, result.output
    # ... and with the key list replaced too: the export signature no longer verifies
    forged = forge(bundle, forger, forged_key, keep_key_list=False)
    result = verify_file(world.app, forged, tmp_path, key)
    assert result.exit_code == 1
    assert "the export signature: does not verify" in result.output, result.output
    # ... and signed again as a whole by the forger: consistent with itself, and unproven
    forged.pop("export_signature")
    sign_bundle(forged, forger, base64.b64decode(forged_key))
    assert verify_bundle(forged).status == "unproven"  # no key pinned: anyone could sign
    result = verify_file(world.app, forged, tmp_path, key)
    assert result.exit_code == 3
    assert "which is not a trusted key" in result.output, result.output


def forge(
    bundle: dict[str, Any], forger: Ed25519PrivateKey, forged_key: str, *, keep_key_list: bool
) -> dict[str, Any]:
    """Someone holding the database but not the key: a record changed, the chain re-hashed
    after it, and each checkpoint's statement re-signed with a key of their own."""
    from services.domain.evidence import key_id, root_from_proof

    forged = copy.deepcopy(bundle)
    records = forged["chain"]["records"]
    records[2]["content"]["site_id"] = 999
    previous = records[1]["hash"]
    for record in records[2:]:
        record["prev_hash"] = previous
        record["hash"] = link(previous, record["content"])
        previous = record["hash"]
    forged["chain"]["head"] = [len(records), previous]
    moved = {
        old["hash"]: new["hash"]
        for old, new in zip(bundle["chain"]["records"], records, strict=True)
    }
    for signature in forged["signatures"]:  # each signature bound again to its moved record
        signature["record_hash"] = moved[signature["record_hash"]]
        signature["hash"] = link(signature["record_hash"], signature["content"])
    forged_id = key_id(base64.b64decode(forged_key))
    for checkpoint in forged["checkpoints"]:
        length = checkpoint["leaf"]["length"]
        checkpoint["leaf"]["head"] = records[length - 1]["hash"]
        checkpoint["root"] = root_from_proof(
            forged["chain"]["key"], length, checkpoint["leaf"]["head"], checkpoint["proof"]
        )
        message = statement(
            taken_at=checkpoint["taken_at"],
            records=checkpoint["records"],
            root=checkpoint["root"],
            prev_hash=checkpoint["prev_hash"],
            digest=checkpoint["hash"],
        )
        checkpoint["signature"] = base64.b64encode(forger.sign(message)).decode()
        checkpoint["key_id"] = forged_id
    entry = {"key_id": forged_id, "algorithm": "Ed25519", "public_key": forged_key}
    if not keep_key_list:
        forged["installation"]["public_keys"] = [entry]
    return forged


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_cli_exports_the_bundle_the_api_gives(app: Any, world: World, tmp_path: Path) -> None:
    unit = world.bag_at("receive")
    signed_checkpoint(world)
    target = tmp_path / "evidence.json"
    result = run_cli(app, "audit", "export", unit["coi"], "-o", str(target))
    assert result.exit_code == 0, result.output
    on_disk = json.loads(target.read_text())
    api = exported(world, unit["coi"], who="op")
    for part in ("chain", "signatures", "reviews", "checkpoints", "installation"):
        assert on_disk[part] == api[part], part
    assert on_disk["order"]["patient_ref"]  # the installation's operator sees all of it
    assert on_disk["order"]["identity_salt"]  # ... and what checks it against the seal
    assert "patient_ref" not in api["order"]
    assert "identity_salt" not in api["order"]
    key = world.get("op", "/api/v1/keys").json["keys"][0]["public_key"]
    result = run_cli(app, "audit", "verify", "--bundle", str(target), "--public-key", key)
    assert result.exit_code == 0, result.output
    assert "the patient reference is the one record 1 sealed" in result.output
    result = run_cli(app, "audit", "verify", "--bundle", str(target))
    assert result.exit_code == 3, result.output  # no key pinned


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_bundle_verifies_in_a_fresh_virtualenv_with_no_database(
    world: World, tmp_path: Path
) -> None:
    """The package alone, installed where no database is reachable: what a regulator or the
    treatment site does with a bundle 30 years from now."""
    unit = world.bag_at("receive")
    signed_checkpoint(world)
    bundle = exported(world, unit["coi"], who="op")
    key = world.get("op", "/api/v1/keys").json["keys"][0]["public_key"]
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(bundle))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        pytest.fail(f"pip could not install the package: {install.stderr[-2000:]}")
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        # a database that cannot be reached: the bundle must not need one
        "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1",
        "VAR_DIR": str(tmp_path / "nowhere"),
    }
    ran = subprocess.run(
        [str(venv / "bin" / "vein2vein"), "audit", "verify", "--bundle", str(path),
         "--public-key", key],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "verified:" in ran.stdout
    assert "1 signed checkpoints" in ran.stdout
    bundle["chain"]["records"][1]["content"]["actor_email"] = "someone@else.example"
    path.write_text(json.dumps(bundle))
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "services.bundle", str(path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "record 2 of order:" in ran.stderr, ran.stderr


# signed and witnessed checkpoints


def test_checkpoints_are_signed_with_the_installation_key_and_the_cli_makes_it(
    world: World, tmp_path: Path
) -> None:
    settings = world.app.extensions["vein2vein"].settings
    assert not settings.signing_key_path.exists()
    result = run_cli(world.app, "keys", "init")
    assert result.exit_code == 0, result.output
    assert oct(settings.signing_key_path.stat().st_mode & 0o777) == "0o600"
    assert run_cli(world.app, "keys", "init").exit_code != 0  # never overwritten by accident
    world.bag_at("collected")
    result = run_cli(world.app, "audit", "checkpoint")
    assert result.exit_code == 0, result.output
    with UnitOfWork(session_factory(world)) as uow:
        (row,) = uow.session.exec(select(AuditCheckpoint)).all()
        assert row.signature
        assert row.key_id
        assert row.root
    published = world.get("op", "/api/v1/keys").json["keys"]
    assert [k["key_id"] for k in published] == [row.key_id]
    result = run_cli(world.app, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "1 checkpoints" in result.output
    # a checkpoint's signature that does not verify is a broken record
    tamper(world, f"UPDATE audit_checkpoints SET root = '{'0' * 64}' WHERE id = {row.id}")
    result = run_cli(world.app, "audit", "verify")
    assert result.exit_code == 1
    assert "checkpoint" in result.output


def test_a_witnessed_checkpoint_catches_a_database_rewritten_to_agree_with_itself(
    world: World, tmp_path: Path
) -> None:
    with webhook_receiver() as receiver:
        hook = subscribe(world, "qa", channel="webhook", target=receiver.url, events=["checkpoint"])
        made = world.bag_at("receive", "PAT-WITNESSED")
        signed_checkpoint(world)
        assert "delivered" in deliver_due(world.app)
        (delivery,) = [d for d in receiver.accepted() if d.json["data"]["kind"] == "checkpoint"]
    body = delivery.verify(hook["secret"])
    witness = tmp_path / "witness.json"
    witness.write_text(json.dumps(body))
    result = run_cli(world.app, "audit", "verify", "--witness", str(witness))
    assert result.exit_code == 0, result.output

    # the superuser rewrites the order's first event, every hash after it, the chain head and
    # the checkpoint, and re-signs it with the installation's own key (they hold the server)
    rewrite_order_chain(world, made["coi"])
    result = run_cli(world.app, "audit", "verify")
    assert result.exit_code == 0, result.output  # the database agrees with itself
    result = run_cli(world.app, "audit", "verify", "--witness", str(witness))
    assert result.exit_code == 1
    assert "rewritten" in result.output, result.output


def rewrite_order_chain(world: World, coi: str) -> None:
    from services.db.models import Order
    from services.domain.audit import chain_key
    from services.domain.evidence import merkle_root

    factory = session_factory(world)
    with UnitOfWork(factory) as uow:
        order = uow.session.exec(select(Order).where(Order.coi == coi)).one()
        key = chain_key(order.id)
        links = audit.order_chain(uow.session, order)
        (checkpoint,) = uow.session.exec(select(AuditCheckpoint)).all()
        first_event = next(item for item in links if item.table == "custody_events")
    statements = [f"UPDATE custody_events SET reason = 'rewritten' WHERE id = {first_event.id}"]
    tamper(world, *statements)
    with UnitOfWork(factory) as uow:
        order = uow.session.exec(select(Order).where(Order.coi == coi)).one()
        links = audit.order_chain(uow.session, order)
    with UnitOfWork(factory) as uow:
        fixes, previous = relink_statements(uow.session, key, links)
    heads = dict(checkpoint.heads)
    heads[key] = [heads[key][0], previous]
    root = merkle_root(heads)
    signer = keys.load_signer(world.app.extensions["vein2vein"].settings.signing_key_path)
    assert signer is not None
    new_hash = link(
        checkpoint.prev_hash, checkpoint_content(heads, checkpoint.records, checkpoint.taken_at)
    )
    message = statement(
        taken_at=canonical_time(checkpoint.taken_at),
        records=checkpoint.records,
        root=root,
        prev_hash=checkpoint.prev_hash,
        digest=new_hash,
    )
    heads_json = json.dumps(heads).replace("'", "''")
    fixes.append(
        f"UPDATE audit_checkpoints SET heads = '{heads_json}', root = '{root}', "
        f"hash = '{new_hash}', signature = '{sign(signer.private, message)}' "
        f"WHERE id = {checkpoint.id}"
    )
    tamper(world, *fixes)
