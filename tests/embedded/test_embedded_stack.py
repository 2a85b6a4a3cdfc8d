"""The embedded default as `make run` starts it: SQLite and Celery's filesystem broker, no servers.

Real processes: `vein2vein db upgrade`, `vein2vein demo`, `vein2vein run`, a Celery worker and
the beat, each with no DATABASE_URL or BROKER_URL set.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import httpx
import pytest

from tests.processes import BIN, clean_env, demo_tokens, free_port, running, wait_for_log
from tests.receivers import webhook_receiver

pytestmark = pytest.mark.embedded


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "vein2vein"), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_web_serves_the_api_on_the_embedded_default(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    demo = _cli(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "var" / "vein2vein.db").exists()  # the default database location
    tokens = demo_tokens(demo.stdout)
    staff = {"Authorization": f"Bearer {tokens['apheresis@northgate.demo']}"}

    port = free_port()
    with running(
        [str(BIN / "vein2vein"), "run", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        log=tmp_path / "web.log",
    ) as web:
        wait_for_log(tmp_path / "web.log", "Running on", web)
        base = f"http://127.0.0.1:{port}/api/v1"
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/openapi.json").status_code == 200
            order = http.post(
                "/orders",
                headers=staff,
                json={
                    "patient_ref": "EMB-1",
                    "product": "axi-cel",
                    "collection_site": "APH-NORTH",
                    "manufacturing_site": "MFG-EAST",
                    "treatment_site": "TRT-NORTH",
                },
            )
            assert order.status_code == 201, order.text
            unit = http.post(f"/orders/{order.json()['coi']}/collections", headers=staff, json={})
            assert unit.status_code == 201, unit.text
            # the label printed (a download is on record as a print), then its 2-D code read
            din = unit.json()["din"]
            assert http.get(f"/units/{din}/label?format=zpl", headers=staff).status_code == 200
            scan = http.post(
                "/scans",
                headers=staff,
                json={
                    "barcode": unit.json()["label_2d"],
                    "action": "verify_label",
                    "site": "APH-NORTH",
                    "event_id": str(uuid.uuid4()),
                },
            )
            assert scan.status_code == 201, scan.text
            assert scan.json()["to_state"] == "label_verified"


@contextmanager
def worker_and_beat(cwd: Path) -> Iterator[tuple[Popen[bytes], Popen[bytes]]]:
    """`make run`'s worker and beat, with no broker or database configured."""
    celery = str(BIN / "celery")
    with (
        running(
            [celery, "-A", "workers.celery_app", "worker", "--concurrency=1", "--loglevel=INFO"],
            cwd=cwd,
            env=clean_env(),
            log=cwd / "worker.log",
        ) as worker,
        running(
            [celery, "-A", "workers.celery_app", "beat", "--loglevel=INFO"],
            cwd=cwd,
            env=clean_env(),
            log=cwd / "beat.log",
        ) as beat,
    ):
        yield worker, beat


def test_worker_and_beat_run_on_the_filesystem_broker(tmp_path: Path) -> None:
    with worker_and_beat(tmp_path) as (worker, beat):
        log = wait_for_log(tmp_path / "worker.log", "ready.", worker)
        assert "filesystem://" in log
        wait_for_log(tmp_path / "beat.log", "beat: Starting", beat)
        time.sleep(1)
        assert worker.poll() is None
        assert beat.poll() is None
    assert (tmp_path / "var" / "broker" / "queue").is_dir()


def test_notifications_flow_on_the_embedded_default(tmp_path: Path) -> None:
    """`make run`'s stack delivers: a webhook to a receiver and an e-mail into var/mail/."""
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    demo = _cli(tmp_path, "demo")
    tokens = demo_tokens(demo.stdout)
    staff = {"Authorization": f"Bearer {tokens['apheresis@northgate.demo']}"}
    care = {"Authorization": f"Bearer {tokens['care@northgate.demo']}"}
    port = free_port()
    with (
        webhook_receiver() as receiver,
        running(
            [str(BIN / "vein2vein"), "run", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            log=tmp_path / "web.log",
        ) as web,
        worker_and_beat(tmp_path) as (worker, _beat),
    ):
        wait_for_log(tmp_path / "web.log", "Running on", web)
        wait_for_log(tmp_path / "worker.log", "ready.", worker)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10) as http:
            order = http.post(
                "/orders",
                headers=staff,
                json={
                    "patient_ref": "EMB-2",
                    "product": "axi-cel",
                    "collection_site": "APH-NORTH",
                    "manufacturing_site": "MFG-EAST",
                    "treatment_site": "TRT-NORTH",
                },
            ).json()
            unit = http.post(f"/orders/{order['coi']}/collections", headers=staff, json={}).json()
            for channel, target in (("webhook", receiver.url), ("email", "nurse@example.org")):
                response = http.post(
                    "/subscriptions",
                    headers=care,
                    json={"coi": order["coi"], "channel": channel, "target": target},
                )
                assert response.status_code == 201, response.text
            label = http.get(f"/units/{unit['din']}/label?format=zpl", headers=staff)
            assert label.status_code == 200
            scan = http.post(
                "/scans",
                headers=staff,
                json={
                    "barcode": unit["label_2d"],
                    "action": "verify_label",
                    "site": "APH-NORTH",
                    "event_id": str(uuid.uuid4()),
                },
            )
            assert scan.status_code == 201, scan.text
            deadline = time.monotonic() + 60
            mail = tmp_path / "var" / "mail"
            while time.monotonic() < deadline and not (
                receiver.accepted() and mail.is_dir() and list(mail.glob("*.eml"))
            ):
                time.sleep(0.3)
    (delivery,) = receiver.accepted()
    assert delivery.json["data"]["kind"] == "verify_label"
    (email,) = mail.glob("*.eml")
    assert "nurse@example.org" in email.read_text()
