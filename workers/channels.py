"""Delivery channels: e-mail over SMTP (or to files), and Standard Webhooks over HTTP."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import smtplib
import socket
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from services.config import Settings
from services.domain.errors import InvalidRequest
from services.domain.notifications import Channel, body_text, check_public_address, summary
from services.operations.notifications import Attempt, Outcome


class Senders:
    """The channels for one chunk of deliveries, sharing one HTTP client (kept-alive
    connections) across its webhooks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http: httpx.Client | None = None

    def __enter__(self) -> Senders:
        return self

    def __exit__(self, *_: object) -> None:
        if self._http is not None:
            self._http.close()

    def send(self, attempt: Attempt) -> Outcome:
        if attempt.channel is Channel.EMAIL:
            return send_email(attempt, self.settings)
        if attempt.channel is Channel.WEBHOOK:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=self.settings.webhook_timeout_seconds, follow_redirects=False
                )
            return send_webhook(attempt, self.settings, self._http)
        return Outcome(
            error=f"channel {attempt.channel} is not delivered by workers", permanent=True
        )


def message_id(attempt: Attempt, settings: Settings) -> str:
    """Stable across attempts: a receiver that sees it twice can drop the second."""
    return f"<notification-{attempt.notification_id}@{settings.message_id_domain}>"


def email_message(attempt: Attempt, settings: Settings) -> EmailMessage:
    payload = attempt.payload
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
    message.add_alternative(
        f"<!doctype html><html><body><p><strong>{html.escape(summary(payload))}</strong></p>"
        f"<table>{rows}</table></body></html>",
        subtype="html",
    )
    return message


def send_email(attempt: Attempt, settings: Settings) -> Outcome:
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


def send_webhook(attempt: Attempt, settings: Settings, http: httpx.Client) -> Outcome:
    if not attempt.secret:
        return Outcome(error="the subscription has no signing secret", permanent=True)
    host = urlsplit(attempt.target).hostname or ""
    if not settings.webhook_allow_private_targets:
        try:
            addresses = [info[4][0] for info in socket.getaddrinfo(host, None)]
            check_public_address(host, [str(a) for a in addresses])
        except InvalidRequest as refused:
            return Outcome(error=refused.detail, permanent=True)
        except OSError as error:
            return Outcome(error=f"cannot resolve {host}: {error}")
    body = webhook_body(attempt)
    sent_at = dt.datetime.now(dt.UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "vein2vein-webhooks/1",
        "webhook-id": webhook_id(attempt),
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(attempt.secret).sign(webhook_id(attempt), sent_at, body),
    }
    try:
        response = http.post(attempt.target, content=body, headers=headers)
    except httpx.HTTPError as error:
        return Outcome(error=f"{type(error).__name__}: {error}")
    if 200 <= response.status_code < 300:
        return Outcome()
    if response.status_code == 410:
        return Outcome(error="410 Gone: the endpoint is disabled", gone=True)
    return Outcome(error=f"HTTP {response.status_code}: {response.text[:200]}")
