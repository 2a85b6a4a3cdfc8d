"""Delivery channels: e-mail over SMTP (or to files), and Standard Webhooks over HTTP."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import smtplib
import socket
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from services.config import Settings
from services.domain.errors import InvalidRequest
from services.domain.family_status import FAMILY_KIND
from services.domain.notifications import DIGEST, Channel, body_text, summary
from services.domain.targets import (
    WebhookUrl,
    check_email_address,
    check_public_address,
    parse_webhook_url,
)
from services.domain.webhook_secrets import SecretUnreadable, reveal
from services.operations.notifications import Attempt, Outcome

log = logging.getLogger(__name__)

# a receiver's answer is read this far at most: its status is what counts, the rest is for the log
MAX_RESPONSE_BYTES = 4096
# what a channel raises that no retry will mend: the target itself cannot be sent to
PERMANENT_ERRORS = (ValueError, UnicodeError, httpx.InvalidURL, httpx.UnsupportedProtocol)


class Senders:
    """The channels for one chunk of deliveries. Webhooks to one host share one HTTP client
    (kept-alive connections); clients are never shared between hosts, because each connects to
    the address its host was checked to have."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http: dict[str, httpx.Client] = {}

    def __enter__(self) -> Senders:
        return self

    def __exit__(self, *_: object) -> None:
        for client in self._http.values():
            client.close()

    def send(self, attempt: Attempt) -> Outcome:
        """Send one notification. Whatever goes wrong is the row's outcome (recorded on it, retried
        or dead-lettered), never an exception that would stall the worker and the rows behind."""
        try:
            if attempt.channel is Channel.EMAIL:
                return send_email(attempt, self.settings)
            if attempt.channel is Channel.WEBHOOK:
                return send_webhook(attempt, self.settings, self._client)
            return Outcome(
                error=f"channel {attempt.channel} is not delivered by workers", permanent=True
            )
        except PERMANENT_ERRORS as error:
            return Outcome(error=_describe(error), permanent=True)
        except Exception as error:
            log.exception("notification %s: the channel failed", attempt.notification_id)
            return Outcome(error=_describe(error))

    def _client(self, host: str) -> httpx.Client:
        if host not in self._http:
            third = self.settings.webhook_timeout_seconds / 3
            self._http[host] = httpx.Client(timeout=httpx.Timeout(third), follow_redirects=False)
        return self._http[host]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def message_id(attempt: Attempt, settings: Settings) -> str:
    """Stable across attempts: a receiver that sees it twice can drop the second."""
    return f"<notification-{attempt.notification_id}@{settings.message_id_domain}>"


def family_message(attempt: Attempt, settings: Settings) -> EmailMessage:
    """A family's e-mail: the new stage in plain words, the treatment site's name and phone,
    and a link to stop them (one click, RFC 8058). No identifier, no site code, no person."""
    payload = attempt.payload
    message = EmailMessage()
    message["Subject"] = summary(payload)
    message["From"] = settings.mail_from
    message["To"] = attempt.target
    message["Message-ID"] = message_id(attempt, settings)
    message["Date"] = format_datetime(attempt.created_at)
    message["List-Unsubscribe"] = f"<{payload['stop_url']}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    phone = payload.get("site_phone")
    ask = f"Questions? Call {payload['site_name']} on {phone}." if phone else ""
    lines = [
        payload["title"],
        "",
        payload["words"],
        *payload.get("expected", []),
        "",
        "Open the status page with the link your care team gave you to see more.",
        ask,
        "",
        f"To stop these e-mails: {payload['stop_url']}",
    ]
    message.set_content("\n".join(lines) + "\n")
    expected = "".join(f"<p>{html.escape(line)}</p>" for line in payload.get("expected", []))
    message.add_alternative(
        f"<!doctype html><html><body><h1>{html.escape(payload['title'])}</h1>"
        f"<p>{html.escape(payload['words'])}</p>{expected}"
        "<p>Open the status page with the link your care team gave you to see more.</p>"
        f"<p>{html.escape(ask)}</p>"
        f'<p><a href="{html.escape(payload["stop_url"])}">Stop these e-mails</a></p>'
        "</body></html>",
        subtype="html",
    )
    return message


def email_message(attempt: Attempt, settings: Settings) -> EmailMessage:
    payload = attempt.payload
    if payload.get("kind") == FAMILY_KIND:
        return family_message(attempt, settings)
    message = EmailMessage()
    message["Subject"] = f"[vein2vein] {summary(payload)}"
    message["From"] = settings.mail_from
    message["To"] = attempt.target
    message["Message-ID"] = message_id(attempt, settings)
    message["Date"] = format_datetime(attempt.created_at)
    message["X-Vein2vein-Notification"] = str(attempt.notification_id)
    text = body_text(payload)
    message.set_content(text)
    rows = "".join(
        f"<tr><th align='left'>{html.escape(line[:12].strip())}</th>"
        f"<td><code>{html.escape(line[12:].strip())}</code></td></tr>"
        for line in text.splitlines()[2:]
        if line.strip()
    )
    listing = f"<table>{rows}</table>"
    if payload.get("kind") == DIGEST:  # a day's progress: one line per item
        items = "".join(f"<li>{html.escape(line)}</li>" for line in text.splitlines()[2:] if line)
        listing = f"<ul>{items}</ul>"
    message.add_alternative(
        f"<!doctype html><html><body><p><strong>{html.escape(summary(payload))}</strong></p>"
        f"{listing}</body></html>",
        subtype="html",
    )
    return message


def send_email(attempt: Attempt, settings: Settings) -> Outcome:
    try:
        check_email_address(attempt.target)  # a row from before targets were checked
    except InvalidRequest as refused:
        return Outcome(error=refused.detail, permanent=True)
    message = email_message(attempt, settings)
    if not settings.smtp_url:
        _write_mail_file(settings.mail_folder, attempt.notification_id, message)
        return Outcome()
    url = urlsplit(settings.smtp_url)
    secure = url.scheme == "smtps"
    options = parse_qs(url.query)
    smtp_class = smtplib.SMTP_SSL if secure else smtplib.SMTP
    try:
        with smtp_class(
            url.hostname or "localhost",
            url.port or (465 if secure else 25),
            timeout=settings.smtp_timeout_seconds,
        ) as smtp:
            if options.get("starttls", ["false"])[0].lower() in ("1", "true", "yes"):
                smtp.starttls()
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        return Outcome(error=f"recipient refused: {error.recipients}", permanent=True)
    except (OSError, smtplib.SMTPException) as error:
        return Outcome(error=f"SMTP: {error}")
    return Outcome()


def _write_mail_file(folder: Path, notification_id: int, message: EmailMessage) -> None:
    """The embedded default: one .eml per notification, replaced atomically on a repeat."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(bytes(message))
    os.replace(temporary, folder / f"notification-{notification_id:08d}.eml")


def webhook_id(attempt: Attempt) -> str:
    return f"v2v_notification_{attempt.notification_id}"


def webhook_body(attempt: Attempt) -> str:
    payload = attempt.payload
    return json.dumps(
        {"type": payload["type"], "timestamp": payload["recorded_at"], "data": payload},
        separators=(",", ":"),
        sort_keys=True,
    )


def resolve(target: WebhookUrl, *, allow_private: bool) -> str:
    """The address to connect to, resolved once: every address the name has must be public
    (unless private targets are allowed), and the connection goes to the one checked."""
    if target.is_literal:
        addresses = [target.host]
    else:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        check_public_address(target.host, addresses)
    return addresses[0]


def send_webhook(
    attempt: Attempt, settings: Settings, client_for: Callable[[str], httpx.Client]
) -> Outcome:
    if not attempt.secret:
        return Outcome(error="the subscription has no signing secret", permanent=True)
    try:
        secret = reveal(attempt.secret, settings.webhook_secret_keys)
    except SecretUnreadable as error:  # a key to put back: tried again, as the row allows
        return Outcome(error=str(error))
    allow_private = bool(settings.webhook_allow_private_targets)
    try:
        target = parse_webhook_url(attempt.target, allow_private=allow_private)
        address = resolve(target, allow_private=allow_private)
    except InvalidRequest as refused:
        return Outcome(error=refused.detail, permanent=True)
    except OSError as error:
        return Outcome(error=f"cannot resolve {urlsplit(attempt.target).hostname}: {error}")
    body = webhook_body(attempt)
    sent_at = dt.datetime.now(dt.UTC)
    default_port = 443 if target.scheme == "https" else 80
    headers = {
        # the request goes to the checked address; the receiver still sees its own name
        "host": target.host if target.port == default_port else f"{target.host}:{target.port}",
        "content-type": "application/json",
        "user-agent": "vein2vein-webhooks/1",
        "webhook-id": webhook_id(attempt),
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id(attempt), sent_at, body),
    }
    extensions = {}
    if target.scheme == "https" and not target.is_literal:
        extensions["sni_hostname"] = target.host  # TLS checks the certificate against the name
    deadline = time.monotonic() + settings.webhook_timeout_seconds
    url = httpx.URL(target.url).copy_with(host=address)
    try:
        with client_for(target.host).stream(
            "POST", url, content=body, headers=headers, extensions=extensions
        ) as response:
            text = _read_bounded(response, deadline)
    except httpx.HTTPError as error:
        return Outcome(error=_describe(error))
    except TimeoutError:
        return Outcome(
            error=f"no complete answer within {settings.webhook_timeout_seconds:g} s (timed out)"
        )
    if 200 <= response.status_code < 300:
        return Outcome()
    if response.status_code == 410:
        return Outcome(error="410 Gone: the endpoint is disabled", gone=True)
    return Outcome(error=f"HTTP {response.status_code}: {text[:200]}")


def _read_bounded(response: httpx.Response, deadline: float) -> str:
    """At most MAX_RESPONSE_BYTES of the answer, and nothing after the deadline: a receiver that
    trickles an endless answer cannot hold a worker."""
    if 200 <= response.status_code < 300:
        return ""  # the status says it all; the rest is not read
    received = bytearray()
    for chunk in response.iter_bytes():
        received += chunk
        if len(received) >= MAX_RESPONSE_BYTES:
            break
        if time.monotonic() > deadline:
            raise TimeoutError
    return received[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")
