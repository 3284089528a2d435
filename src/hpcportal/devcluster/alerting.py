"""The dev cluster's alerting: Debian's ``prometheus-alertmanager`` and the shipped rules.

Prometheus (``monitoring.py``) loads the alert rules the portal ships
(``services/operations/templates/alert_rules.yml``, copied to
``monitoring/alert_rules.yml``) and sends what fires to this cluster's Alertmanager on
the slot's ``alertmanager_port``. Its configuration is the one ``hpcportal cluster
render`` writes (``render_alertmanager``), with short waits so a test sees an alert
within seconds: everything goes to the portal's receiver at the cluster's portal
target (``up --portal-target``), with the bearer token of
``monitoring/alertmanager.token`` (made once, 0600). A portal of this cluster sets
``alertmanager_token_file`` to that file. Alertmanager's own clustering is off
(``--cluster.listen-address=``): one instance per dev cluster.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from hpcportal.devcluster.files import ensure_dir, write_if_changed
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import Slot
from hpcportal.services.operations.render import (
    ALERT_RECEIVER_PATH,
    alert_rules,
    render_alertmanager,
)

#: Alertmanager's waits in the dev cluster: an alert reaches the portal within seconds.
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = "1s", "2s", "1h"


def alertmanager_yml(layout: Layout) -> Path:
    return layout.monitoring / "alertmanager.yml"


def alertmanager_data(layout: Layout) -> Path:
    return layout.monitoring / "alertmanager"


def alertmanager_pid(layout: Layout) -> Path:
    return layout.run / "alertmanager.pid"


def alertmanager_token(layout: Layout) -> Path:
    """The receiver's bearer token (the portal's ``alertmanager_token_file``)."""
    return layout.monitoring / "alertmanager.token"


def alert_rules_file(layout: Layout) -> Path:
    return layout.monitoring / "alert_rules.yml"


def alertmanager_url(slot: Slot) -> str:
    return f"http://127.0.0.1:{slot.alertmanager_port}"


def receiver_url(portal_target: str) -> str:
    return f"http://{portal_target}{ALERT_RECEIVER_PATH}"


def render_dev_alertmanager(layout: Layout, portal_target: str) -> str:
    return render_alertmanager(
        [receiver_url(portal_target)],
        str(alertmanager_token(layout)),
        group_wait=GROUP_WAIT,
        group_interval=GROUP_INTERVAL,
        repeat_interval=REPEAT_INTERVAL,
    )


def ensure_token(path: Path) -> None:
    """A random token, made once (0600): Alertmanager and the portal read the same file."""
    if path.exists() and path.read_text().strip():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")


def write_alerting_config(layout: Layout, portal_target: str) -> bool:
    """The rules, the token and alertmanager.yml; True if the rules or config changed."""
    ensure_dir(layout.monitoring)
    ensure_dir(alertmanager_data(layout))
    ensure_token(alertmanager_token(layout))
    changed = write_if_changed(alert_rules_file(layout), alert_rules())
    changed |= write_if_changed(
        alertmanager_yml(layout), render_dev_alertmanager(layout, portal_target)
    )
    return changed
