"""Checks of network lists shared by several groups of settings.

``delivery_allowed_networks`` (``delivery.py``) and ``metrics_allowed_networks``
(``endpoints.py``) are written out normalised by the same rule, each group's validator
calling ``normalised_networks``.
"""

from __future__ import annotations

import ipaddress


def normalised_networks(value: list[str]) -> list[str]:
    """Each entry a network (a bare address is one host), written out normalised."""
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as exc:
            raise ValueError(
                f"{item!r} is not an IP address or network (e.g. 10.0.0.0/24, ::1)"
            ) from exc
    return networks
