"""Serving: the address to listen on, the proxies in front, and the log format.

``host`` and ``port`` for ``hpcportal serve`` (and the addresses the portal gives out
for itself), ``trusted_proxies`` whose X-Forwarded-For is believed (``app.py``), the
log format (``log_setup.py``, set by ``cli/main.py``) and the dev cluster's folder.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class ServingSettings(BaseModel):
    """How the portal's server listens and logs."""

    # Serving
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies in front "
        "(HAProxy, nginx): only for a request from one of them is the client's address "
        "taken from X-Forwarded-For (and the scheme from X-Forwarded-Proto), for rate "
        "limits and the audit log. Empty: the connection's own address, always.",
    )
    log_format: Literal["plain", "json"] = Field(
        default="plain",
        description="plain: one line per record for journald (no timestamp under "
        "systemd, which adds its own); json: one JSON object per line for a log "
        "collector. Secrets are redacted either way.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, lt=65536)
    devcluster_dir: Path = Field(
        default=Path(".devcluster"), description="Where `hpcportal dev-cluster` keeps everything."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{item!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24)"
                ) from exc
        return value
