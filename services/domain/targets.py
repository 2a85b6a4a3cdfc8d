"""Where messages go: e-mail addresses and webhook URLs, checked before anything is stored.

A target that cannot be delivered to must be refused when it is given (a clear 422), never found
out at delivery, where it would only sit in the outbox. Nothing here resolves a name or opens a
connection: the worker resolves a webhook's host once, checks those addresses with
:func:`check_public_address` and connects to the address it checked.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from services.domain.errors import InvalidRequest

MAX_URL_LENGTH = 2048
# a host name as DNS knows it, once IDNA-encoded: labels of letters, digits and hyphens
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_email_address(text: str) -> str:
    """An address a mail server will take: one address, no display name, no line breaks (they
    would let a target write headers of its own), ASCII on the wire (the domain IDNA-encoded)."""
    text = text.strip()
    if _CONTROL.search(text):
        raise InvalidRequest("an e-mail address cannot contain line breaks or control characters")
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise InvalidRequest(f"{text!r} is not an e-mail address: {error}") from None
    return checked.ascii_email or checked.normalized


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    url: str  # as given, stripped
    scheme: str  # http | https
    host: str  # lower case, IDNA-encoded, brackets removed from an IPv6 literal
    port: int

    @property
    def is_literal(self) -> bool:
        return _ip(self.host) is not None


def parse_webhook_url(text: str, *, allow_private: bool) -> WebhookUrl:
    """A URL httpx can send to: http(s), a real host, a port in range, no credentials, no
    fragment; https only (and public hosts only) unless private targets are allowed."""
    url = text.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"a webhook URL has at most {MAX_URL_LENGTH} characters")
    if _CONTROL.search(url) or " " in url:
        raise InvalidRequest(
            "a webhook URL cannot contain spaces, line breaks or control characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as error:
        raise InvalidRequest(f"{url!r} is not a valid URL: {error}") from None
    if parts.scheme not in ("https", "http"):
        raise InvalidRequest(f"{url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("a webhook URL cannot carry a user name or password")
    if parts.fragment:
        raise InvalidRequest("a webhook URL cannot have a #fragment")
    if not hostname:
        raise InvalidRequest(f"{url!r} names no host")
    host = _host(hostname)
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise InvalidRequest(f"port {port} is outside 1-65535")
    if not allow_private:
        check_public_address(host)
        if parts.scheme == "http":
            raise InvalidRequest("webhook targets must use https")
    return WebhookUrl(url=url, scheme=parts.scheme, host=host, port=port)


def _host(hostname: str) -> str:
    address = _ip(hostname)
    if address is not None:
        return str(address)
    try:
        encoded = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidRequest(f"{hostname!r} is not a valid host name") from None
    labels = encoded.rstrip(".").split(".")
    if len(encoded) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidRequest(f"{hostname!r} is not a valid host name")
    return encoded.rstrip(".")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_public_address(host: str, addresses: list[str] | None = None) -> None:
    """Refuse loopback, private, link-local and other non-public targets (SSRF). ``addresses``:
    what the host resolved to; without them only a literal address or a local name is judged."""
    lowered = host.lower()
    if lowered in ("localhost", "localhost.localdomain") or lowered.endswith(
        (".local", ".localhost", ".internal")
    ):
        raise InvalidRequest(f"webhook target {host} is not a public address")
    for text in addresses if addresses is not None else [host]:
        address = _ip(text)
        if address is None:
            continue  # a name: its addresses are checked when it is resolved, before sending
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
        if not address.is_global:
            raise InvalidRequest(f"webhook target {host} ({address}) is not a public address")
        embedded = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        if embedded is not None and not embedded.is_global:
            raise InvalidRequest(
                f"webhook target {host} ({address}) reaches {embedded}, which is not a public "
                "address"
            )
        if isinstance(address, ipaddress.IPv6Address) and address in _LOCAL_NAT64:
            raise InvalidRequest(
                f"webhook target {host} ({address}) is in a local-use NAT64 range (RFC 8215)"
            )


# IPv6 ranges that carry an IPv4 address a router or translator will deliver to. Python's
# is_global judges the IPv6 address alone (64:ff9b::a9fe:a9fe is "global"), so the IPv4 address
# inside is judged too: NAT64 to the metadata address is the metadata address.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # IPv4-mapped
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # IPv4-compatible (deprecated, RFC 4291)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): any IPv4
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # 6to4 (RFC 3056)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address of a mapped, compatible, NAT64 or 6to4 range reaches."""
    if address in _MAPPED or address in _COMPATIBLE or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None
