"""Machine endpoints: who may read /metrics, and the secrets of Slurm's mail and
Alertmanager.

The addresses and token file a scraper may use for ``/metrics``
(``api/http_metrics.py``), and the secret files without which
``POST /api/v1/slurm-mail`` (``api/slurm_mail.py``, fed by hpcportal-mailprog) and
``POST /api/v1/alerts/alertmanager`` (``api/alert_receiver.py``) refuse everything.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from hpcportal.config.networks import normalised_networks


class EndpointSettings(BaseModel):
    """Who may call the endpoints meant for other programs, not people."""

    # Metrics (api/http_metrics.py)
    metrics_allowed_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Client addresses or networks (CIDR) that may read /metrics (behind "
        "a proxy, the client as trusted_proxies makes it). Empty: only the token.",
    )
    metrics_token_file: Path | None = Field(
        default=None,
        description="A file whose first line is a token that lets a scraper read /metrics "
        "from any address with 'Authorization: Bearer <token>'; read at each scrape, so "
        "it can be replaced in place. Unset: no token is accepted.",
    )

    # Delivery (issue 15.4, 15.5): Slurm's mail through hpcportal-mailprog, and the
    # Alertmanager receiver. Each endpoint answers only while its secret file is set.
    slurm_mail_secret_file: Path | None = Field(
        default=None,
        description="A file (e.g. /etc/hpcportal/slurm-mail.secret, readable by SlurmUser "
        "on the slurmctld hosts) whose first line is the secret hpcportal-mailprog sends to "
        "POST /api/v1/slurm-mail; read at each request. Unset: the endpoint refuses all.",
    )
    alertmanager_token_file: Path | None = Field(
        default=None,
        description="A file whose first line is the bearer token Alertmanager sends to "
        "POST /api/v1/alerts/alertmanager (its http_config credentials_file holds the "
        "same); read at each request. Unset: the receiver refuses all.",
    )

    @field_validator("metrics_allowed_networks")
    @classmethod
    def _metrics_networks(cls, value: list[str]) -> list[str]:
        """Each entry a network (a bare address is one host), written out normalised."""
        return normalised_networks(value)
