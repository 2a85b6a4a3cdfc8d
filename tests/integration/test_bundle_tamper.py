"""The evidence bundle against an adversary: every forgery, stripping and malformed file is
refused against the installation's pinned key, through `python -m services.bundle` (a real
process) and `vein2vein audit verify --bundle` alike, never with a traceback; the untouched
bundle verifies. Mutated bundles (hypothesis) never verify and never raise. The verifier runs
with nothing but the standard library and `cryptography`."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.cli import ScriptInfo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import cli
from services.bundle import parse
from services.domain.audit import canonical, link
from services.domain.evidence import (
    key_id,
    public_bytes,
    root_from_proof,
    sign,
    sign_bundle,
    statement,
)
from services.domain.evidence_check import verify_bundle
from services.operations import keys
from tests.integration.test_epcis import whole_loop
from tests.integration.test_evidence import signed_checkpoint
from tests.integration.test_vein_to_vein import bc
from tests.world import PASSWORD, World, csrf_token

ROOT = Path(__file__).resolve().parents[2]
VERIFIED, BROKEN, NOT_CHECKED, UNPROVEN = 0, 1, 2, 3


# what the suite runs every bundle through


@dataclass(frozen=True)
class Verdict:
    module: int  # python -m services.bundle's exit status
    module_output: str
    command: int  # vein2vein audit verify --bundle's
    command_output: str


def judge(app: Any, data: bytes, key: str | None, tmp_path: Path) -> Verdict:
    """The file checked by both verifiers, against ``key`` (or no key at all)."""
    path = tmp_path / "bundle.json"
    path.write_bytes(data)
    pinned = ["--public-key", key] if key else []
    ran = subprocess.run(
        [sys.executable, "-m", "services.bundle", str(path), *pinned],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},  # no AUDIT_TRUSTED_KEYS
    )  # fmt: skip
    result = CliRunner().invoke(
        cli.main,
        ["audit", "verify", "--bundle", str(path), *pinned],
        obj=ScriptInfo(create_app=lambda: app),
        env={  # settings of their own: no trusted key but the one given
            "AUDIT_TRUSTED_KEYS": "",
            "SIGNING_KEY_PATH": str(tmp_path / "no-key-here.pem"),
            "VAR_DIR": str(tmp_path / "cli-var"),
            "APP_ENV": "development",
        },
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"vein2vein raised {result.exception!r}") from result.exception
    return Verdict(ran.returncode, ran.stdout + ran.stderr, result.exit_code, result.output)


def encoded(bundle: Any) -> bytes:
    return json.dumps(bundle, indent=2).encode()


# what a forger does with the public functions


def relink(bundle: dict[str, Any], start: int) -> None:
    """Every record from index ``start`` hashed again after the one before it, the head moved,
    and the signatures and reviews bound again to the new hashes (all of it public)."""
    records = bundle["chain"]["records"]
    moved: dict[str, str] = {}
    previous = records[start - 1]["hash"] if start else "0" * 64
    for record in records[start:]:
        old = record["hash"]
        record["prev_hash"] = previous
        record["hash"] = link(previous, record["content"])
        moved[old] = previous = record["hash"]
    bundle["chain"]["head"] = [len(records), previous]
    for kind in ("signatures", "reviews"):
        for item in bundle[kind]:
            item["record_hash"] = moved.get(item["record_hash"], item["record_hash"])
            item["hash"] = link(item["record_hash"], item["content"])


def entry(private: Ed25519PrivateKey) -> dict[str, str]:
    raw = public_bytes(private.public_key())
    return {
        "key_id": key_id(raw),
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(raw).decode(),
    }


def resign_checkpoints(bundle: dict[str, Any], private: Ed25519PrivateKey) -> None:
    """Each checkpoint made to prove the (rewritten) chain, signed with the forger's key, and
    the installation's keys replaced by the forger's."""
    records = bundle["chain"]["records"]
    forged = entry(private)
    for checkpoint in bundle["checkpoints"]:
        length = checkpoint["leaf"]["length"]
        checkpoint["leaf"]["head"] = records[length - 1]["hash"]
        checkpoint["root"] = root_from_proof(
            bundle["chain"]["key"], length, checkpoint["leaf"]["head"], checkpoint["proof"]
        )
        message = statement(
            taken_at=checkpoint["taken_at"],
            records=checkpoint["records"],
            root=checkpoint["root"],
            prev_hash=checkpoint["prev_hash"],
            digest=checkpoint["hash"],
        )
        checkpoint["signature"] = sign(private, message)
        checkpoint["key_id"] = forged["key_id"]
    bundle["installation"]["public_keys"] = [forged]


def sign_as(bundle: dict[str, Any], private: Ed25519PrivateKey) -> None:
    bundle.pop("export_signature", None)
    sign_bundle(bundle, private, public_bytes(private.public_key()))


def unsigned(bundle: dict[str, Any]) -> None:
    bundle.pop("export_signature", None)


def position_of(bundle: dict[str, Any], action: str) -> int:
    """The index of the (last) record of ``action``."""
    records = bundle["chain"]["records"]
    return max(i for i, r in enumerate(records) if r["content"].get("action") == action)


def the_issues_attack(bundle: dict[str, Any]) -> None:
    """Issue 28's forgery: the infusion's time and actor rewritten, the chain re-linked with the
    public hash function, checkpoints, public keys and signatures emptied."""
    at = position_of(bundle, "infuse")
    content = bundle["chain"]["records"][at]["content"]
    content["occurred_at"] = "2020-01-01T00:00:00.000000Z"
    content["actor_id"] += 1
    content["identity"]["actor"] = "someone-else@example.org"
    relink(bundle, at)
    bundle["checkpoints"] = []
    bundle["installation"]["public_keys"] = []
    bundle["signatures"] = []


def reattribute(bundle: dict[str, Any]) -> None:
    signature = bundle["signatures"][0]
    signature["content"].update(
        printed_name="Somebody Else", signer_id=signature["content"]["signer_id"] + 1
    )
    signature["content"]["signer_email"] = "somebody@else.example"
    signature["hash"] = link(signature["record_hash"], signature["content"])


def invent_signature(bundle: dict[str, Any], *, witness: bool) -> None:
    at = position_of(bundle, "receive")
    record = bundle["chain"]["records"][at]
    content = {
        "event_id": record["content"].get("id", 1),
        "signer_id": 1,
        "printed_name": "Invented Person",
        "meaning": "witness" if witness else "verified",
        "witness": witness,
        "signed_at": record["content"]["recorded_at"],
        "signer_email": "invented@example.org",
    }
    bundle["signatures"].append(
        {"record_hash": record["hash"], "hash": link(record["hash"], content), "content": content}
    )


def truncate(bundle: dict[str, Any], count: int) -> None:
    records = bundle["chain"]["records"]
    del records[-count:]
    bundle["chain"]["head"] = [len(records), records[-1]["hash"]]
    kept = {r["hash"] for r in records}
    for kind in ("signatures", "reviews"):
        bundle[kind] = [item for item in bundle[kind] if item["record_hash"] in kept]


def review_a_refusal(world: World, din: str) -> None:
    """A refused scan in the order's chain, closed by QA with a signed review."""
    refused = world.scan("op", bc(din), "verify_label", "MFG-1")
    assert refused.status_code == 409, refused.json
    qa = world.browser("qa")
    listed = re.findall(r"/review/refused_scan/(\d+)", qa.get("/review").get_data(as_text=True))
    assert listed
    closed = qa.post(
        f"/review/refused_scan/{listed[0]}",
        data={
            "outcome": "no_action",
            "note": "checked",
            "email": "qa@example.org",
            "password": PASSWORD,
            "csrf_token": csrf_token(qa, "/"),
        },
    )
    assert closed.status_code == 303


@dataclass
class Made:
    bundle: dict[str, Any]  # as the care team exports it (the patient reference included)
    key: str  # the installation's published key
    other: dict[str, Any]  # the same order exported by another installation
    stranger: Ed25519PrivateKey  # a forger's key


@pytest.fixture
def made(world: World, app_factory: Any, tmp_path: Path) -> Made:
    coi, din = whole_loop(world)
    review_a_refusal(world, din)
    signed_checkpoint(world)
    world.scan("care", "nothing-we-know", "receive", "TRT-1")
    signed_checkpoint(world)
    key = world.get("care", "/api/v1/keys").json["keys"][0]["public_key"]
    response = world.get("care", f"/api/v1/orders/{coi}/evidence")
    assert response.status_code == 200
    bundle = response.json
    assert bundle["signatures"]
    assert bundle["reviews"]
    assert len(bundle["checkpoints"]) == 2
    # another installation: its own key (trusting ours, so it lists our checkpoints' key)
    other_path = tmp_path / "other" / "checkpoint-ed25519.pem"
    keys.init_key(other_path)
    other_app = app_factory(signing_key_path=other_path, audit_trusted_keys=key)
    other = other_app.test_client().get(
        f"/api/v1/orders/{coi}/evidence", headers=world.headers("care")
    )
    assert other.status_code == 200
    return Made(bundle, key, other.json, Ed25519PrivateKey.generate())


Tamper = Callable[[dict[str, Any], Made], Any]


def _changed(change: Tamper) -> Callable[[Made], bytes]:
    def build(made: Made) -> bytes:
        bundle = copy.deepcopy(made.bundle)
        change(bundle, made)
        return encoded(bundle)

    return build


def _raw(data: bytes) -> Callable[[Made], bytes]:
    return lambda _made: data


def _with_record(path: tuple[Any, ...], value: Any) -> Callable[[Made], bytes]:
    """The real bundle with one value replaced (``path`` into it)."""

    def change(bundle: dict[str, Any], _made: Made) -> None:
        target: Any = bundle
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return _changed(change)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def _attack_signed_by_stranger(bundle: dict[str, Any], made: Made) -> None:
    the_issues_attack(bundle)
    sign_as(bundle, made.stranger)


def _keys_swapped_resigned(bundle: dict[str, Any], made: Made) -> None:
    resign_checkpoints(bundle, made.stranger)
    sign_as(bundle, made.stranger)


def _keys_swapped_only(bundle: dict[str, Any], made: Made) -> None:
    forged = entry(made.stranger)
    bundle["installation"]["public_keys"] = [forged]
    bundle["export_signature"].update(key_id=forged["key_id"], public_key=forged["public_key"])


def _claims_the_pinned_key(bundle: dict[str, Any], made: Made) -> None:
    sign_as(bundle, made.stranger)  # signed by the forger, but naming the installation's key
    raw = base64.b64decode(made.key)
    bundle["export_signature"].update(key_id=key_id(raw), public_key=made.key)


CASES: list[tuple[str, Callable[[Made], bytes], int, str]] = [
    ("untouched", lambda made: encoded(made.bundle), VERIFIED, "verified:"),
    ("from another installation", lambda made: encoded(made.other), UNPROVEN,
     "which is not a trusted key"),
    ("checkpoints stripped", _changed(lambda b, m: b.update(checkpoints=[])), BROKEN,
     "the export signature: does not verify"),
    ("checkpoints and export signature stripped",
     _changed(lambda b, m: (b.update(checkpoints=[]), unsigned(b))), UNPROVEN,
     "carries no export signature"),
    ("signatures stripped", _changed(lambda b, m: b.update(signatures=[])), BROKEN,
     "the export signature: does not verify"),
    ("reviews stripped", _changed(lambda b, m: b.update(reviews=[])), BROKEN,
     "the export signature: does not verify"),
    ("a signature re-attributed", _changed(lambda b, m: reattribute(b)), BROKEN,
     "the export signature: does not verify"),
    ("a signature invented", _changed(lambda b, m: invent_signature(b, witness=False)), BROKEN,
     "the export signature: does not verify"),
    ("a witness invented", _changed(lambda b, m: invent_signature(b, witness=True)), BROKEN,
     "the export signature: does not verify"),
    ("the patient reference changed",
     _changed(lambda b, m: b["order"].update(patient_ref="PAT-OTHER")), BROKEN,
     "its patient reference is not the one record 1 sealed"),
    ("the COI changed", _changed(lambda b, m: b["order"].update(coi="CHA100126ZZZZZZ")), BROKEN,
     "names COI 'CHA100126ZZZZZZ'"),
    ("the treatment site changed",
     _changed(lambda b, m: b["order"].update(treatment_site="TRT-2")), BROKEN,
     "names treatment site 'TRT-2'"),
    ("the header changed and the export signature stripped",
     _changed(lambda b, m: (b["order"].update(treatment_site="TRT-2"), unsigned(b))), BROKEN,
     "names treatment site 'TRT-2'"),
    ("records truncated", _changed(lambda b, m: truncate(b, 3)), BROKEN, "records were removed"),
    ("records truncated, checkpoints and signature stripped",
     _changed(lambda b, m: (truncate(b, 3), b.update(checkpoints=[]), unsigned(b))), UNPROVEN,
     "carries no export signature"),
    ("the issue's attack, export signature kept", _changed(lambda b, m: the_issues_attack(b)),
     BROKEN, "the export signature: does not verify"),
    ("the issue's attack, export signature stripped",
     _changed(lambda b, m: (the_issues_attack(b), unsigned(b))), UNPROVEN,
     "carries no export signature"),
    ("the issue's attack, signed by the forger", _changed(_attack_signed_by_stranger), UNPROVEN,
     "which is not a trusted key"),
    ("keys swapped, signature kept", _changed(_keys_swapped_only), BROKEN,
     "checkpoint"),
    ("keys swapped and everything signed again", _changed(_keys_swapped_resigned), UNPROVEN,
     "which is not a trusted key"),
    ("the forger's signature claiming the pinned key", _changed(_claims_the_pinned_key), BROKEN,
     "the export signature: does not verify"),
    ("an added top-level key", _changed(lambda b, m: b.update(note="all fine")), BROKEN,
     "the export signature: does not verify"),
    ("an extra key in the signature block",
     _changed(lambda b, m: b["export_signature"].update(note="x")), BROKEN,
     "has keys it should not"),
    # malformed
    ("not JSON", _raw(b"this is not json"), BROKEN, "is not a JSON bundle"),
    ("empty", _raw(b""), BROKEN, "is not a JSON bundle"),
    ("a list", _raw(b"[1, 2, 3]"), BROKEN, "is an array, not a JSON object"),
    ("null", _raw(b"null"), BROKEN, "is null, not a JSON object"),
    ("no parts", _raw(b'{"format": "vein2vein-evidence/2"}'), BROKEN, "has no 'installation'"),
    ("another format", _raw(b'{"format": "something/1"}'), BROKEN, "is not a vein2vein evidence"),
    ("deeply nested", _raw(b"[" * 200_000), BROKEN, "nests too deeply"),
    ("a huge number", _raw(b'{"format": ' + b"9" * 50_000 + b"}"), BROKEN,
     "is not a JSON bundle"),
    ("NaN", _raw(b'{"format": NaN}'), BROKEN, "NaN is not a JSON number"),
    ("a duplicate key", _raw(b'{"format": "a", "format": "b"}'), BROKEN, "appears twice"),
    ("not UTF-8", _raw(b'{"format": "\xff\xfe"}'), BROKEN, "is not UTF-8"),
    ("a lone surrogate", _with_record(("order", "product"), "\ud800"), BROKEN,
     "not valid Unicode"),
    ("a key not base64", _with_record(("installation", "public_keys", 0, "public_key"), "no!"),
     BROKEN, "is not base64"),
    ("a key of the wrong length",
     _with_record(("installation", "public_keys", 0, "public_key"), "AAAA"), BROKEN,
     "is 3 bytes, not 32"),
    ("a position as text", _with_record(("chain", "records", 0, "position"), "1"), BROKEN,
     "is text, not a whole number"),
    ("a position too large", _with_record(("chain", "records", 0, "position"), 10**30), BROKEN,
     "too large"),
    ("records not a list", _with_record(("chain", "records"), {}), BROKEN,
     "is an object, not an array"),
    ("a hash not hex", _with_record(("chain", "records", 0, "hash"), "zz"), BROKEN,
     "is not a SHA-256 hash"),
    ("content nested deep", _with_record(("chain", "records", 0, "content"), _nested(60)),
     BROKEN, "nests deeper than"),
    ("a checkpoint count as a float", _with_record(("checkpoints", 0, "records"), 1e308), BROKEN,
     "is a number, not a whole number"),
    ("a proof too long", _with_record(("checkpoints", 0, "proof"), [["L", "0" * 64]] * 1000),
     BROKEN, "its proof has 1000 steps"),
    ("the signature block as text", _with_record(("export_signature",), "signed, trust me"),
     BROKEN, "is text, not an object"),
    ("a signature not base64", _with_record(("export_signature", "signature"), "!!"), BROKEN,
     "does not verify"),
]  # fmt: skip


def test_every_forgery_is_refused_against_the_pinned_key_by_both_verifiers(
    world: World, made: Made, tmp_path: Path
) -> None:
    wrong = []
    for name, build, expected, phrase in CASES:
        verdict = judge(world.app, build(made), made.key, tmp_path)
        for who, status, output in (
            ("python -m services.bundle", verdict.module, verdict.module_output),
            ("vein2vein audit verify --bundle", verdict.command, verdict.command_output),
        ):
            if status != expected or phrase not in output or "Traceback" in output:
                wrong.append(f"{name} / {who}: exit {status} (not {expected}): {output[-600:]}")
    assert wrong == [], "\n".join(wrong)


def test_without_a_pinned_key_nothing_verifies(world: World, made: Made, tmp_path: Path) -> None:
    """The untouched bundle and the issue's forgery alike: origin unproven, exit 3; the forgery
    that keeps the installation's signature is broken even then (the signature is checked
    against the key the bundle names)."""
    verdict = judge(world.app, encoded(made.bundle), None, tmp_path)
    assert (verdict.module, verdict.command) == (UNPROVEN, UNPROVEN), verdict
    assert "ORIGIN UNPROVEN: no trusted key was given" in verdict.module_output
    forged = copy.deepcopy(made.bundle)
    the_issues_attack(forged)
    verdict = judge(world.app, encoded(forged), None, tmp_path)
    assert (verdict.module, verdict.command) == (BROKEN, BROKEN), verdict
    unsigned(forged)
    verdict = judge(world.app, encoded(forged), None, tmp_path)
    assert (verdict.module, verdict.command) == (UNPROVEN, UNPROVEN), verdict


def test_a_trusted_key_from_the_environment_or_the_settings_verifies(
    world: World, made: Made, tmp_path: Path
) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(encoded(made.bundle))
    env = {"PATH": os.environ["PATH"], "AUDIT_TRUSTED_KEYS": f" , {made.key}"}
    ran = subprocess.run(
        [sys.executable, "-m", "services.bundle", str(path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert ran.returncode == VERIFIED, ran.stderr
    # the installation's own key file, as the settings name it
    key_file = world.app.extensions["vein2vein"].settings.signing_key_path
    result = CliRunner().invoke(
        cli.main,
        ["audit", "verify", "--bundle", str(path)],
        obj=ScriptInfo(create_app=lambda: world.app),
        env={"SIGNING_KEY_PATH": str(key_file), "AUDIT_TRUSTED_KEYS": ""},
    )
    assert result.exit_code == VERIFIED, result.output
    # keys that are not keys: not checked at all (exit 2), never a traceback
    env["AUDIT_TRUSTED_KEYS"] = "not-a-key"
    ran = subprocess.run(
        [sys.executable, "-m", "services.bundle", str(path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert ran.returncode == NOT_CHECKED, ran.stderr
    assert "AUDIT_TRUSTED_KEYS: key 1" in ran.stderr
    assert "Traceback" not in ran.stderr
    result = CliRunner().invoke(
        cli.main,
        ["audit", "verify", "--bundle", str(path), "--public-key", "%%%"],
        obj=ScriptInfo(create_app=lambda: world.app),
    )
    assert result.exit_code == NOT_CHECKED, result.output
    assert "--public-key" in result.output
    missing = subprocess.run(
        [sys.executable, "-m", "services.bundle", str(tmp_path / "nothing.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert missing.returncode == NOT_CHECKED
    assert "cannot read" in missing.stderr


# fuzzing the verifier


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(bundle: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> Any:
    mutated = copy.deepcopy(bundle)
    if not path:
        return value if how == "replace" else [mutated] if how == "wrap" else mutated
    parent: Any = mutated
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif how == "wrap":
        parent[last] = [parent[last]]
    elif how == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif how == "insert" and isinstance(parent[last], dict):
        parent[last]["fuzz"] = value
    elif how == "insert" and isinstance(parent[last], list):
        parent[last].append(value)
    elif isinstance(parent[last], str):
        parent[last] = parent[last][::-1] + "x"
    elif isinstance(parent[last], bool):
        parent[last] = not parent[last]
    elif isinstance(parent[last], (int, float)):
        parent[last] = parent[last] + 1
    return mutated


def test_mutated_bundles_never_verify_and_never_raise(world: World, made: Made) -> None:
    trusted = [base64.b64decode(made.key)]
    original = made.bundle
    assert verify_bundle(original, trusted_keys=trusted).ok
    paths = _paths(original)
    original_bytes = canonical(original)
    seen: dict[str, int] = {}

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
    )
    @given(
        where=st.sampled_from(paths),
        how=st.sampled_from(["replace", "delete", "wrap", "duplicate", "insert", "nudge"]),
        value=JSON,
    )
    def attempt(where: tuple[Any, ...], how: str, value: Any) -> None:
        mutated = _mutate(original, where, how, value)
        report = verify_bundle(mutated, trusted_keys=trusted)  # must not raise
        seen[report.status] = seen.get(report.status, 0) + 1
        try:
            same = canonical(mutated) == original_bytes
        except (TypeError, ValueError, UnicodeEncodeError):
            same = False
        if not same:
            assert not report.ok, (where, how, value)

    attempt()
    assert seen.get("broken", 0) > 100, seen  # the mutations reached the checks


def test_mutated_bytes_are_findings_never_exceptions(made: Made) -> None:
    text = encoded(made.bundle)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(
        at=st.integers(min_value=0, max_value=len(text) - 1),
        cut=st.integers(min_value=0, max_value=64),
        insert=st.binary(max_size=16),
    )
    def attempt(at: int, cut: int, insert: bytes) -> None:
        data = text[:at] + insert + text[at + cut :]
        try:
            bundle = parse(data)
        except ValueError:
            return  # the command says "is not a JSON bundle: ..."
        report = verify_bundle(bundle, trusted_keys=[base64.b64decode(made.key)])
        try:
            same = canonical(bundle) == canonical(made.bundle)
        except (TypeError, ValueError):
            same = False
        if not same:
            assert not report.ok

    attempt()


# the verifier's dependencies


def test_the_verifier_runs_with_only_the_standard_library_and_cryptography(
    made: Made, tmp_path: Path
) -> None:
    """A copy of the verifier's own files and of `cryptography` (with cffi's backend, which it
    loads), run with `python -I -S`: no site-packages, no vein2vein install. It verifies, and
    it imported nothing but the standard library and those."""
    alone = tmp_path / "alone"
    for name in (
        "services/__init__.py",
        "services/bundle.py",
        "services/domain/__init__.py",
        "services/domain/audit.py",
        "services/domain/evidence.py",
        "services/domain/evidence_check.py",
    ):
        (alone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, alone / name)
    import _cffi_backend
    import cryptography

    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / "cryptography").symlink_to(Path(cryptography.__file__).parent)
    backend = Path(_cffi_backend.__file__ or "")
    (packages / backend.name).symlink_to(backend)
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(encoded(made.bundle))
    imported = tmp_path / "imported.json"
    program = (
        "import json, runpy, sys\n"
        f"sys.path[:0] = [{str(alone)!r}, {str(packages)!r}]\n"
        f"sys.argv = ['services.bundle', {str(bundle)!r}, '--public-key', {made.key!r}]\n"
        "try:\n"
        "    runpy.run_module('services.bundle', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        f"    open({str(imported)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env={},
    )  # fmt: skip
    assert ran.returncode == VERIFIED, ran.stdout + ran.stderr
    assert "verified:" in ran.stdout
    names = {name.split(".")[0] for name in json.loads(imported.read_text())}
    allowed = {"__main__", "services", "cryptography", "_cffi_backend", "_openssl", "_rust"}
    foreign = names - set(sys.stdlib_module_names) - allowed
    assert foreign == set(), foreign
    ours = {name for name in json.loads(imported.read_text()) if name.startswith("services")}
    assert ours == {  # services.bundle itself runs as __main__
        "services",
        "services.domain",
        "services.domain.audit",
        "services.domain.evidence",
        "services.domain.evidence_check",
    }
