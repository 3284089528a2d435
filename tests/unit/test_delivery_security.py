"""Webhook signatures (sign, verify, replay, tampering) and the URL guard against
server-side request forgery: schemes, credentials, the host allow list, private and
loopback addresses (literal, or behind a host name, or after DNS rebinding) and the
networks an admin opened."""

from __future__ import annotations

import pytest

from hpcportal.config import Settings
from hpcportal.services.delivery import signature
from hpcportal.services.delivery.url_guard import UrlGuard, UrlRefused

SECRET = "whsec-unit-test"
BODY = b'{"id":"abc","event":"job.failed"}'


def test_signature_verifies_and_returns_the_delivery_id() -> None:
    headers = signature.headers(SECRET, "abc", 1_700_000_000, BODY)
    assert headers[signature.SIGNATURE_HEADER].startswith("v1=")
    assert signature.verify(SECRET, headers, BODY, now=1_700_000_100) == "abc"


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature.sign(SECRET, 1_700_000_000, BODY) == f"v1={expected}"


@pytest.mark.parametrize(
    ("change", "now"),
    [
        ("body", 1_700_000_000),
        ("secret", 1_700_000_000),
        ("timestamp", 1_700_000_000),
        ("none", 1_700_000_000 + 301),  # replayed after the tolerance
        ("none", 1_700_000_000 - 301),  # from the future
    ],
)
def test_signature_refuses_altered_or_stale_requests(change: str, now: int) -> None:
    headers = signature.headers(SECRET, "abc", 1_700_000_000, BODY)
    body, secret = BODY, SECRET
    if change == "body":
        body = BODY.replace(b"failed", b"passed")
    elif change == "secret":
        secret = "another"
    elif change == "timestamp":
        headers[signature.TIMESTAMP_HEADER] = "1700000001"
    with pytest.raises(signature.SignatureInvalid):
        signature.verify(secret, headers, body, now=now)


def test_delivery_id_is_stable_and_does_not_show_the_key() -> None:
    one = signature.delivery_id("job-failed:alice:7:c1")
    assert one == signature.delivery_id("job-failed:alice:7:c1")
    assert one != signature.delivery_id("job-failed:alice:8:c1")
    assert "alice" not in one and len(one) == 32


class Dns:
    """A resolver stand-in for names that cannot exist on this machine's DNS; answers
    may change between lookups (rebinding)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers

    def __call__(self, host: str, port: int) -> list[str]:
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def guard(resolve: Dns | None = None, **settings: object) -> UrlGuard:
    s = Settings(**settings)  # type: ignore[arg-type]
    return UrlGuard.from_settings(s, resolve) if resolve else UrlGuard.from_settings(s)


def test_a_public_https_url_passes_and_is_pinned_to_its_address() -> None:
    target = guard(Dns({"hooks.example.org": [["93.184.216.34"]]})).check(
        "https://hooks.example.org/in/x?y=1"
    )
    assert target.host == "hooks.example.org" and target.port == 443
    assert target.pinned_url == "https://93.184.216.34:443/in/x?y=1"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.org/in",  # http not allowed by default
        "ftp://hooks.example.org/in",
        "https://user:pw@hooks.example.org/in",
        "https:///nohost",
        "https://10.0.0.5/admin",
        "https://127.0.0.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://0.0.0.0/",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(UrlRefused):
        guard(Dns({"hooks.example.org": [["93.184.216.34"]]})).check(url)


def test_a_host_name_resolving_to_a_private_address_is_refused() -> None:
    dns = Dns({"intranet.example.org": [["93.184.216.34", "10.1.2.3"]]})
    with pytest.raises(UrlRefused, match=r"10\.1\.2\.3"):
        guard(dns).check("https://intranet.example.org/hook")


def test_localhost_is_refused_by_its_real_resolution() -> None:
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.1|::1"):
        guard(delivery_allowed_schemes=["http"]).check("http://localhost:9/hook")


def test_dns_rebinding_is_caught_at_send_time() -> None:
    dns = Dns({"rebind.example.org": [["93.184.216.34"], ["127.0.0.1"]]})
    checker = guard(dns)
    assert checker.check("https://rebind.example.org/h").address == "93.184.216.34"  # saved
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.1"):
        checker.check("https://rebind.example.org/h")  # sent: now loopback


def test_allowed_networks_open_private_addresses_on_purpose() -> None:
    checker = guard(delivery_allowed_schemes=["http"], delivery_allowed_networks=["127.0.0.1"])
    assert checker.check("http://127.0.0.1:8099/hook").address == "127.0.0.1"
    with pytest.raises(UrlRefused):
        checker.check("http://127.0.0.2:8099/hook")


def test_the_host_allow_list_is_exact_or_a_subdomain_wildcard() -> None:
    dns = Dns(
        {h: [["93.184.216.34"]] for h in ("hooks.slack.com", "a.chat.example.org", "evil.org")}
    )
    checker = guard(dns, delivery_allowed_hosts=["hooks.slack.com", "*.chat.example.org"])
    checker.check("https://hooks.slack.com/services/T/B/X")
    checker.check("https://a.chat.example.org/hook")
    for url in ("https://evil.org/hook", "https://chat.example.org.evil.org/x"):
        with pytest.raises(UrlRefused, match="allowed webhook hosts"):
            checker.check(url)
