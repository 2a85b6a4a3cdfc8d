"""Starting our real processes (web, worker, beat) for tests, and waiting for them."""

from __future__ import annotations

import os
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
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "BROKER_URL",
            "SMTP_URL",
            "SECRET_KEY",
            "APP_ENV",
            "VAR_DIR",
            "FLASK_APP",
        }
    }
    env.update(overrides)
    return env


@contextmanager
def running(
    args: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
