"""Targets are judged before anything is stored: e-mail addresses and webhook URLs."""

from __future__ import annotations

import pytest

from services.domain.errors import InvalidRequest
from services.domain.targets import check_email_address, check_public_address, parse_webhook_url


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("https://hooks.example.org/v2v", "https", "hooks.example.org", 443),
        ("http://127.0.0.1:8080/h?x=1", "http", "127.0.0.1", 8080),
        ("https://[2001:db8::1]:8443/h", "https", "2001:db8::1", 8443),
        ("https://Bücher.Example/h", "https", "xn--bcher-kva.example", 443),
        ("  https://example.org/h  ", "https", "example.org", 443),
    ],
)
def test_a_webhook_url_is_parsed_to_what_the_worker_connects_to(
    text: str, scheme: str, host: str, port: int
) -> None:
    target = parse_webhook_url(text, allow_private=True)
    assert (target.scheme, target.host, target.port) == (scheme, host, port)
    assert target.url == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com:abc/h",
        "https://[x/",
        "https://example.com:0/h",
        "https://example.com:65536/h",
        "https://u:p@example.com/h",
        "https://example.com/h#x",
        "https://example.com/a b",
        "https://example.com/\nSet-Cookie: x",
        "mailto:a@example.org",
        "https:///h",
        "https://exa_mple.com/h",
        "https://" + "a" * 64 + ".example/h",
        "https://example.com/" + "x" * 2048,
    ],
)
def test_a_webhook_url_that_cannot_be_sent_to_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_webhook_url(text, allow_private=True)


@pytest.mark.parametrize(
    "text",
    [
        "http://example.org/h",  # https only
        "https://127.0.0.1/h",
        "https://10.0.0.8/h",
        "https://[::1]/h",
        "https://[::ffff:127.0.0.1]/h",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/h",
        "https://db.internal/h",
        "https://printer.local/h",
    ],
)
def test_outside_development_only_public_https_targets(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_webhook_url(text, allow_private=False)


def test_a_name_is_judged_by_what_it_resolved_to() -> None:
    check_public_address("hooks.example.org", ["93.184.216.34"])
    with pytest.raises(InvalidRequest, match="not a public address"):
        check_public_address("hooks.example.org", ["93.184.216.34", "10.0.0.1"])


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("nurse@example.org", "nurse@example.org"),
        ("  Nurse.Ward3@Example.ORG ", "Nurse.Ward3@example.org"),
        ("pflege@münchen.example", "pflege@xn--mnchen-3ya.example"),
    ],
)
def test_an_email_address_is_stored_as_sent_on_the_wire(text: str, stored: str) -> None:
    assert check_email_address(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "nurse@example.org\r\nBcc: all@example.org",
        "Nurse <nurse@example.org>",
        "a@example.org, b@example.org",
        "nurse@localhost",
        "nurse@[10.0.0.1]",
        "nürse@example.org",
        "@example.org",
        "",
    ],
)
def test_an_email_address_a_mail_server_would_not_take_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        check_email_address(text)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 (RFC 6052) to the cloud metadata address
        "64:ff9b::7f00:1",  # NAT64 to loopback
        "64:ff9b::a00:8",  # NAT64 to 10.0.0.8
        "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215): refused whatever it reaches
        "::7f00:1",  # IPv4-compatible loopback
        "::a9fe:a9fe",  # IPv4-compatible metadata address
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::ffff:169.254.169.254",  # IPv4-mapped
    ],
)
def test_an_ipv6_address_that_reaches_a_private_ipv4_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidRequest, match=r"public address|NAT64"):
        check_public_address(address)
    with pytest.raises(InvalidRequest):
        parse_webhook_url(f"https://[{address}]/h", allow_private=False)
    with pytest.raises(InvalidRequest):  # a name that resolves to it, as the worker checks it
        check_public_address("hooks.example.org", [address])


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2606:4700:4700::1111"],
)
def test_an_ipv6_address_that_reaches_a_public_ipv4_address_is_allowed(address: str) -> None:
    check_public_address(address)
