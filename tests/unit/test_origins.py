"""The Origin check compares parsed (scheme, host, port) triples and refuses anything
that is not exactly ``scheme://host[:port]`` (services/live.py)."""

from __future__ import annotations

import pytest

from hpcportal.services.live import normalize_origin, origin_allowed

PORTAL = ("http", "127.0.0.1:8080")  # the request's scheme and Host header


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        # the portal itself, spelt the ways a browser may
        ("http://127.0.0.1:8080", True),
        ("HTTP://127.0.0.1:8080", True),
        # userinfo: a lenient parser takes the part after '@' as the host
        ("http://evil.example@127.0.0.1:8080", False),
        ("http://evil.example:x@127.0.0.1:8080", False),
        ("http://@127.0.0.1:8080", False),
        ("http://127.0.0.1:8080@evil.example", False),
        # trailing garbage: path, query, fragment, backslash, whitespace, dots
        ("http://127.0.0.1:8080/", False),
        ("http://127.0.0.1:8080/evil", False),
        ("http://127.0.0.1:8080?x", False),
        ("http://127.0.0.1:8080#x", False),
        ("http://127.0.0.1:8080\\evil.example", False),
        ("http://127.0.0.1:8080 ", False),
        (" http://127.0.0.1:8080", False),
        ("http://127.0.0.1:8080\r\nX: y", False),
        ("http://127.0.0.1:8080.evil.example", False),
        ("http://127.0.0.1.:8080", False),
        # missing or odd host and port
        ("http://", False),
        ("http://:8080", False),
        ("http://127.0.0.1:", False),
        ("http://127.0.0.1:0", False),
        ("http://127.0.0.1:08080", False),
        ("http://127.0.0.1:+8080", False),
        ("http://127.0.0.1:65536", False),
        ("http://127.0.0.1:99999999999999999999", False),
        ("http://127.0.0.1:8080:8080", False),
        ("http://127.1:8080", False),  # a dotted number that is not an IPv4 address
        ("http://0x7f.0.0.1:8080", False),
        ("http://256.0.0.1:8080", False),
        ("http://127.0.0.1:8081", False),  # another port
        ("http://127.0.0.1", False),  # port 80, not 8080
        ("https://127.0.0.1:8080", False),  # another scheme
        # not an origin a browser sends for this portal
        ("null", False),
        ("", False),
        ("127.0.0.1:8080", False),
        ("//127.0.0.1:8080", False),
        ("ws://127.0.0.1:8080", False),
        ("file://127.0.0.1:8080", False),
        ("javascript://127.0.0.1:8080", False),
        ("http:/127.0.0.1:8080", False),
        ("http://127.0.0.1%3a8080", False),
        ("http://127.0.0.1\x00:8080", False),
    ],
)
def test_origins_against_a_portal_on_a_port(origin: str, ok: bool) -> None:
    assert origin_allowed(origin, *PORTAL) is ok


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "ok"),
    [
        # default ports are the same origin with or without the number
        ("https://portal.example.org", "wss", "portal.example.org", True),
        ("https://portal.example.org:443", "wss", "portal.example.org", True),
        ("https://portal.example.org", "https", "portal.example.org:443", True),
        ("http://portal.example.org:80", "ws", "portal.example.org", True),
        ("http://portal.example.org:443", "ws", "portal.example.org", False),
        ("https://PORTAL.example.ORG", "https", "portal.example.org", True),
        ("https://portal.example.org.", "https", "portal.example.org", False),
        ("https://portal.example.org.evil.com", "https", "portal.example.org", False),
        ("https://evil-portal.example.org", "https", "portal.example.org", False),
        ("https://-portal.example.org", "https", "-portal.example.org", False),
        # IPv6 literals compare as addresses; zones are refused
        ("http://[::1]:8080", "ws", "[::1]:8080", True),
        ("http://[0:0:0:0:0:0:0:1]:8080", "ws", "[::1]:8080", True),
        ("http://[::1%25eth0]:8080", "ws", "[::1]:8080", False),
        ("http://[::1:8080", "ws", "[::1]:8080", False),
        ("http://[zz::1]:8080", "ws", "[zz::1]:8080", False),
        # no Host header: only the allowed list can match
        ("https://portal.example.org", "https", None, False),
        # no Origin: not a browser
        (None, "https", "portal.example.org", True),
    ],
)
def test_default_ports_hosts_and_ipv6(
    origin: str | None, scheme: str, host: str | None, ok: bool
) -> None:
    assert origin_allowed(origin, scheme, host) is ok


def test_the_allowed_list_is_parsed_too() -> None:
    allowed = ("https://ui.example.org/", " https://other.example.org:443 ", "null", "garbage")
    assert origin_allowed("https://ui.example.org", "https", "portal.example.org", allowed)
    assert origin_allowed("https://other.example.org", "https", "portal.example.org", allowed)
    assert not origin_allowed("https://ui.example.org@evil.example", "https", "p", allowed)
    assert not origin_allowed("null", "https", "portal.example.org", allowed)
    assert not origin_allowed("garbage", "https", "portal.example.org", allowed)


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("HTTPS://Portal.Example.org", "https://portal.example.org:443"),
        ("http://portal.example.org", "http://portal.example.org:80"),
        ("http://[::FFFF:127.0.0.1]:8080", "http://[::ffff:7f00:1]:8080"),
        ("http://10.0.0.1:65535", "http://10.0.0.1:65535"),
        ("http://evil.example@127.0.0.1:8080", None),
    ],
)
def test_normal_form(origin: str, normal: str | None) -> None:
    assert normalize_origin(origin) == normal
