"""A real server and a real browser: the app on its own SQLite copy, served by werkzeug in a
thread, driven by Playwright with Debian's chromium (no browser download)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from services.db import UnitOfWork
from services.operations import passwords
from tests.conftest import _service_missing, _settings
from tests.world import PASSWORD, World

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# axe-core, the accessibility engine, from npm: `make install` puts it here when npm is there
AXE = Path(os.environ.get("AXE_CORE_PATH", ROOT / ".venv/axe/node_modules/axe-core/axe.min.js"))
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


def _serve(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        app.extensions["vein2vein"].db.engine.dispose()


@pytest.fixture
def live_factory(
    sqlite_template: Path, tmp_path: Path
) -> Iterator[Callable[..., tuple[str, World]]]:
    """The app on a SQLite copy of its own, served in a thread, with settings as a test needs."""
    from services.web import create_app

    running: list[Iterator[str]] = []

    def make(**overrides: Any) -> tuple[str, World]:
        path = tmp_path / f"vein2vein-{len(running)}.db"
        shutil.copyfile(sqlite_template, path)
        app = create_app(_settings(f"sqlite:///{path}", tmp_path / "var", **overrides))
        world = World.build(app)
        server = _serve(app)
        running.append(server)
        return next(server), world

    yield make
    for server in running:
        next(server, None)


@pytest.fixture
def live(live_factory: Callable[..., tuple[str, World]]) -> tuple[str, World]:
    return live_factory()


@dataclass
class LabelPrinter:
    """A network label printer as far as the wire goes: it takes raw TCP on its port and
    keeps every job it was sent."""

    url: str
    jobs: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[bytes]:
        with self.lock:
            return list(self.jobs)


@pytest.fixture
def label_printer() -> Iterator[LabelPrinter]:
    listener = socket.create_server(("127.0.0.1", 0))
    printer = LabelPrinter(url=f"tcp://127.0.0.1:{listener.getsockname()[1]}")

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                job = bytearray()
                while chunk := connection.recv(65536):
                    job += chunk
            with printer.lock:
                printer.jobs.append(bytes(job))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield printer
    listener.close()


@pytest.fixture(scope="session")
def axe() -> Path:
    if not AXE.exists():
        _service_missing("axe-core", f"{AXE} is missing")
    return AXE


def sign_in(page: Any, base: str, world: World, who: str, password: str = PASSWORD) -> None:
    """Sign in as ``who`` (given ``password``) from the login page, with the keyboard."""
    with UnitOfWork(world.app.extensions["vein2vein"].db.session_factory) as uow:
        passwords.set_password(uow.session, email=f"{who}@example.org", password=password)
        uow.commit()
    page.context.clear_cookies()
    type_credentials(page, base, f"{who}@example.org", password)
    expect(page.locator("main h1")).to_contain_text("what waits for you")


def type_credentials(page: Any, base: str, email: str, password: str) -> None:
    """The login page, used with the keyboard: e-mail, Tab, password, Enter."""
    page.goto(f"{base}/login")
    expect(page.locator("#email")).to_be_focused()  # typing starts where the page put the cursor
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")


def scanner(page: Any, text: str) -> None:
    """A handheld scanner: types into whatever has the focus, fast, then Enter. Like the person
    holding it, it scans once the page has put the focus in a field: an answer that is a new
    page focuses its field a moment after it shows, and keys typed before that go nowhere."""
    page.wait_for_function(
        "document.activeElement !== null && document.activeElement.matches('input, textarea')"
    )
    page.keyboard.type(text, delay=3)
    page.keyboard.press("Enter")


def check_page(page: Any, name: str, axe_path: Path) -> None:
    """Every page, as people see it: a screenshot at desktop and phone width, no sideways
    scrolling at either, and no serious or critical accessibility violation (axe-core)."""
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(50)
        overflow = page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                const wide = [...document.querySelectorAll('body *')]
                  .filter(e => e.getBoundingClientRect().right > width + 1)
                  .filter(e => !e.closest('.table-wrap') || e.classList.contains('table-wrap'))
                  .slice(0, 4).map(e => e.tagName + '.' + e.className + '#' + e.id);
                if (!wide.length) {
                  const all = [...document.querySelectorAll('body *')]
                    .map(e => [e.getBoundingClientRect().right, e.tagName + '.' + e.className])
                    .sort((a, b) => b[0] - a[0]).slice(0, 4);
                  wide.push(...all.map(a => a.join(' ')));
                }
                return [document.documentElement.scrollWidth, width, wide];
            }"""
        )
        assert overflow[0] <= overflow[1], f"{name} scrolls sideways at {width} px: {overflow}"
        screenshot(page, f"{name}-{label}")
    page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})
    assert page.evaluate("() => typeof window.axe !== 'undefined'"), f"no axe-core at {axe_path}"
    results = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                   + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '));
        }"""
    )
    assert results == [], f"{name}: {results}"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _service_missing("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    if AXE.exists():
        # in every document before its own scripts, through the DevTools protocol: no page
        # script, so the pages' strict CSP (script-src 'self') stays as it is
        context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target
