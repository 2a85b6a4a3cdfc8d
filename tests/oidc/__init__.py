"""A real OpenID provider for the tests: panva's oidc-provider (npm, installed by `make install`
into .venv/oidc), run with node on a free loopback port, and a browser for it (httpx: the
provider's own sign-in page, submitted as a person would)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

NODE_MODULES = Path(__file__).resolve().parents[2] / ".venv" / "oidc" / "node_modules"
SCRIPT = Path(__file__).with_name("provider.mjs")
CLIENT_ID, CLIENT_SECRET = "vein2vein-tests", "tests-only-client-secret"


@dataclass(frozen=True)
class OpenIdProvider:
    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    def settings(self) -> dict[str, str]:
        return {
            "oidc_issuer": self.issuer,
            "oidc_client_id": self.client_id,
            "oidc_client_secret": self.client_secret,
            "oidc_name": "Test Hospital",
        }


def missing() -> str | None:
    """Why the provider cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_MODULES / "oidc-provider").is_dir():
        return f"oidc-provider is not installed in {NODE_MODULES}"
    return None


def start() -> Iterator[OpenIdProvider]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["node", str(SCRIPT), str(NODE_MODULES), str(port), CLIENT_ID, CLIENT_SECRET],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NODE_ENV": "test"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"the OpenID provider did not start: {line!r}")
        yield OpenIdProvider(issuer=line.split()[1])
    finally:
        process.terminate()
        process.wait(timeout=10)


class ProviderBrowser:
    """One person's browser at the provider: its cookies are the provider's session."""

    def __init__(self) -> None:
        self.http = httpx.Client(follow_redirects=False, timeout=10)

    def authorize(self, url: str, login: str | None) -> str:
        """Follow the authorization request through the provider's sign-in page (signing in
        as ``login`` when it asks); returns the redirect back to us (path and query)."""
        for _ in range(10):
            if urlsplit(url).hostname == "localhost":
                parts = urlsplit(url)
                return f"{parts.path}?{parts.query}"
            answer = self.http.get(url)
            if answer.status_code in (302, 303):
                url = urljoin(url, answer.headers["location"])
                continue
            form = re.search(r'<form[^>]*action="([^"]+/interaction/[^"]+)"', answer.text)
            assert form, f"the provider showed no sign-in form: {answer.text[:300]}"
            assert login is not None, "the provider asked for a sign-in nobody was to give"
            sent = self.http.post(
                urljoin(url, form.group(1)),
                data={"prompt": "login", "login": login, "password": "any"},
            )
            assert sent.status_code in (302, 303), sent.text[:300]
            url = urljoin(url, sent.headers["location"])
            login = None  # once
        raise AssertionError("the provider never sent the browser back")

    def close(self) -> None:
        self.http.close()


def wait_a_second() -> None:
    """auth_time counts whole seconds: the next second, for a request after a sign-in."""
    time.sleep(1.05)
