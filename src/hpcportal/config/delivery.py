"""Delivery of notifications: site SMTP, webhook safety, the sender and digests.

The SMTP server email channels use, the CA files for SMTP and HTTPS receivers, which
URL schemes, hosts and networks Slack and webhook channels may reach, the outbox
sender's timeouts and retries, and how often digests are folded. Used by
``services/delivery/`` (``channels/``, ``url_guard.py``, ``sender.py``, ``digest.py``).
The secrets of Slurm's mail and the Alertmanager receiver are in ``endpoints.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from hpcportal.config.networks import normalised_networks

#: The URL schemes a delivery channel may use.
UrlScheme = Literal["http", "https"]


def _https_only() -> list[UrlScheme]:
    """Channels reach the network over TLS unless an admin allows plain HTTP."""
    return ["https"]


class DeliverySettings(BaseModel):
    """How messages leave the portal (email, Slack, webhooks), and when."""

    # Delivery core (issue 15): site SMTP, webhook safety, the leader's sender
    # (services/delivery/)
    delivery_smtp_host: str | None = Field(
        default=None,
        description="The SMTP server email channels send through. Unset: email messages "
        "wait in the outbox (and die after the last attempt).",
    )
    delivery_smtp_port: int = Field(default=587, gt=0, lt=65536)
    delivery_smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls: plain connection upgraded with STARTTLS (port 587); tls: "
        "TLS from the first byte (port 465); none: no encryption (a relay on localhost).",
    )
    delivery_smtp_username: str | None = Field(
        default=None, description="SMTP login; unset: no authentication."
    )
    delivery_smtp_password: SecretStr | None = None
    delivery_smtp_password_file: Path | None = Field(
        default=None, description="A file whose first line is the SMTP password."
    )
    delivery_smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the SMTP server's certificate is checked "
        "against; unset: the system's.",
    )
    delivery_https_ca_file: Path | None = Field(
        default=None,
        description="Extra CA certificates (PEM) trusted for HTTPS webhook and Slack "
        "deliveries, in addition to the default ones (httpx's default, certifi): for "
        "internal receivers whose certificates a site CA issued. Unset: the default ones "
        "only. Read again when the file changes; while it is missing or unreadable, each "
        "webhook and Slack send fails saying so.",
    )
    delivery_from: str = Field(
        default="hpcportal@localhost",
        description="From address of the portal's mail; its domain ends each Message-ID.",
    )
    delivery_allowed_schemes: list[UrlScheme] = Field(
        default_factory=_https_only,
        description="URL schemes a Slack or webhook channel may use.",
    )
    delivery_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names Slack and webhook channels may point to (exact, or "
        "*.example.org for its subdomains). Empty: any host whose addresses are public.",
    )
    delivery_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) a webhook host may resolve to although private, "
        "loopback or link-local (refused otherwise, at save and again at each send).",
    )
    delivery_send_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest wait for one SMTP or HTTP send."
    )
    delivery_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts before a message becomes a dead letter."
    )
    delivery_base_delay_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="Wait after the first failure; doubled after each further one "
        "(half of it random), at most delivery_max_delay_seconds.",
    )
    delivery_max_delay_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    delivery_poll_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="The leader looks for due messages this often; 0: no sender here.",
    )

    # A person's channels, subscriptions and digests (issue 15.2; services/delivery/)
    delivery_digest_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="The leader folds digests, quiet-hours and rate-limited messages "
        "whose time has come into the outbox this often; 0: not on this replica.",
    )

    @field_validator("delivery_allowed_networks")
    @classmethod
    def _delivery_networks(cls, value: list[str]) -> list[str]:
        """Each entry a network (a bare address is one host), written out normalised."""
        return normalised_networks(value)
