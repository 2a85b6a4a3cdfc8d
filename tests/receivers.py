"""Real peers for delivery tests: an HTTP webhook receiver and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook

from tests.processes import free_port


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    arrived: float = field(default_factory=time.time)  # the receiver's clock, epoch seconds

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    def verify(self, secret: str) -> dict[str, Any]:
        """What a receiver does: check the Standard Webhooks signature, then read the body."""
        return Webhook(secret).verify(self.body, self.headers)  # type: ignore[no-any-return]


@dataclass
class WebhookReceiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    # statuses to answer, in turn; 200 once they run out
    script: list[int] = field(default_factory=list)
    delay: float = 0.0  # seconds to take over each answer, so a killed worker dies mid-send
    answer_body: bytes = b""  # what to answer with (default "ok" / "not now")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else 200

    def accepted(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{port}/hooks/vein2vein")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if receiver.delay:
                time.sleep(receiver.delay)
            status = receiver.answer()
            if status < 300:
                with receiver.lock:
                    receiver.deliveries.append(
                        Delivery({k.lower(): v for k, v in self.headers.items()}, body)
                    )
            try:
                self.send_response(status)
                self.end_headers()
                self.wfile.write(receiver.answer_body or (b"ok" if status < 300 else b"not now"))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender died mid-request (the SIGKILL test): it will send again

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpSink:
    url: str
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[SmtpSink]:
    port = free_port()
    sink = SmtpSink(url=f"smtp://127.0.0.1:{port}")
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
