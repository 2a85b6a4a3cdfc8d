"""Sending ZPL to a network label printer: raw TCP, port 9100 (the JetDirect protocol every
thermal label printer speaks). LABEL_PRINTER_URL names it: tcp://HOST[:PORT]."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


class PrinterError(Exception):
    """The label printer could not be reached or did not take the label."""


def send_zpl(url: str, zpl: bytes, *, timeout: float = 5.0) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("tcp", "raw", "jetdirect") or not parts.hostname:
        raise PrinterError(f"LABEL_PRINTER_URL {url!r} is not tcp://HOST[:PORT]")
    try:
        port = parts.port or 9100
        with socket.create_connection((parts.hostname, port), timeout=timeout) as connection:
            connection.sendall(zpl)
            connection.shutdown(socket.SHUT_WR)
    except (OSError, ValueError) as error:
        raise PrinterError(
            f"the label printer at {parts.hostname} did not take it: {error}"
        ) from error
