"""Starting our real processes (web, worker, beat, a broker) for tests, and waiting for them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment without any vein2vein configuration, plus ``overrides``."""
    ours = {
        "DATABASE_URL",
        "BROKER_URL",
        "SMTP_URL",
        "SECRET_KEY",
        "WEBHOOK_SECRET_KEY",
        "APP_ENV",
        "VAR_DIR",
        "FLASK_APP",
    }
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(overrides)
    return env


def demo_tokens(stdout: str) -> dict[str, str]:
    """The e-mail -> API token table `vein2vein demo` prints."""
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {row[0]: row[-1] for row in rows}


def start(args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own, so it and its children can be stopped whole."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process's whole group (a Celery worker and its pool children), and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # pool children that outlived their master still belong to the group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def running(
    args: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    process = start(args, cwd=cwd, env=env, log=log)
    try:
        yield process
    finally:
        stop(process)


def wait_for_log(
    log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content:
            return content
        if process.poll() is not None:
            raise AssertionError(
                f"process exited ({process.returncode}) before {text!r}:\n{content[-3000:]}"
            )
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {timeout}s:\n{log.read_text(errors='replace')}")
