"""Which URLs a Slack or webhook channel may reach: no request forgery into the site.

A webhook URL comes from a person, but the request leaves from the portal's host, which
sits inside the site's network: unchecked, ``http://10.0.0.5/admin`` or
``http://169.254.169.254/`` would let a user make the portal call services they cannot
reach themselves. So a URL must

1. use a scheme in ``delivery_allowed_schemes`` (https by default), no user:password;
2. name a host in ``delivery_allowed_hosts`` when that list is not empty;
3. resolve only to public addresses, or to addresses inside ``delivery_allowed_networks``
   (what the admin opened on purpose, e.g. an internal chat server).

The check runs when a channel is saved *and* at each send, on the addresses the send
then connects to (``pinned``): a name that resolved to a public address when saved and
to a private one later (DNS rebinding) is refused, and the connection goes to the very
address checked, not to a second lookup.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from hpcportal.config import Settings

#: host, port -> the addresses it resolves to (``socket.getaddrinfo`` by default).
Resolver = Callable[[str, int], list[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlRefused(Exception):
    """The URL may not be used for a channel; the message says why (shown to users)."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # UnicodeError: a bad IDNA label
        raise UrlRefused(f"{host} does not resolve ({exc})") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address to connect to for it."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return parts._replace(netloc=f"{literal}:{self.port}").geturl()


class UrlGuard:
    """The admin's allow list, applied to channel URLs."""

    def __init__(
        self,
        *,
        schemes: Sequence[str],
        hosts: Sequence[str],
        networks: Sequence[str],
        resolve: Resolver = system_resolver,
    ) -> None:
        self.schemes = {s.lower() for s in schemes}
        self.hosts = [h.lower().rstrip(".") for h in hosts]
        self.networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.resolve = resolve

    @classmethod
    def from_settings(cls, settings: Settings, resolve: Resolver = system_resolver) -> UrlGuard:
        return cls(
            schemes=settings.delivery_allowed_schemes,
            hosts=settings.delivery_allowed_hosts,
            networks=settings.delivery_allowed_networks,
            resolve=resolve,
        )

    def check(self, url: str) -> Target:
        """``url`` checked and resolved now, or ``UrlRefused``."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise UrlRefused(f"not a URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            allowed = ", ".join(sorted(self.schemes)) or "none"
            raise UrlRefused(f"scheme {scheme or '(none)'} is not allowed (allowed: {allowed})")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused("a URL with a user name or password is not allowed")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise UrlRefused("the URL names no host")
        port = port or (443 if scheme == "https" else 80)
        literal = _ip(host)
        if self.hosts and not self._host_listed(host, literal):
            raise UrlRefused(f"{host} is not in the site's list of allowed webhook hosts")
        addresses = [host] if literal is not None else self.resolve(host, port)
        if not addresses:
            raise UrlRefused(f"{host} does not resolve")
        for text in addresses:
            address = _ip(text)
            if address is None:
                raise UrlRefused(f"{host} resolved to {text!r}, not an address")
            self._check_address(host, address)
        return Target(url.strip(), scheme, host, port, addresses[0])

    def _host_listed(self, host: str, literal: Address | None) -> bool:
        if literal is not None and any(literal in n for n in self.networks):
            return True
        for allowed in self.hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]):
                    return True
            elif host == allowed:
                return True
        return False

    def _check_address(self, host: str, address: Address) -> None:
        if any(address in network for network in self.networks):
            return
        mapped = getattr(address, "ipv4_mapped", None)
        if not address.is_global or (mapped is not None and not mapped.is_global):
            raise UrlRefused(
                f"{host} resolves to {address}, a private, loopback or reserved address "
                "that the site has not allowed"
            )


def _ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
