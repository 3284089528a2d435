"""The dev cluster's Alertmanager and MailProg (issue 15.4, 15.5): Prometheus' config
loads the shipped rules and points at the slot's Alertmanager (``promtool check
config`` reads both), the Alertmanager config passes ``amtool check-config``, and
slurm.conf's MailProg is the wrapper ``mail.py`` writes (a reconfigurable change)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from hpcportal.devcluster.alerting import (
    alert_rules_file,
    alertmanager_token,
    alertmanager_yml,
    write_alerting_config,
)
from hpcportal.devcluster.cluster import only_reconfigurable_changes
from hpcportal.devcluster.mail import mail_config, mail_secret, write_mailprog
from hpcportal.devcluster.monitoring import render_prometheus_yml
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import MAX_SLOTS, Slot, cluster_nodes, render_slurm_conf


def check(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (scripts/setup.sh's monitoring packages)")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_ports_are_the_slots_own() -> None:
    ports = [p for i in range(MAX_SLOTS) for p in Slot(i).monitoring_ports()]
    assert len(ports) == len(set(ports))
    assert Slot(0).alertmanager_port == 19600 and Slot(2).alertmanager_port == 19620


def test_prometheus_loads_the_rules_and_sends_to_alertmanager(tmp_path: Path) -> None:
    layout, slot = Layout(tmp_path), Slot(1)
    assert write_alerting_config(layout, "127.0.0.1:8090")
    assert not write_alerting_config(layout, "127.0.0.1:8090")  # unchanged the 2nd time
    text = render_prometheus_yml(cluster_nodes(True, slot), slot, 5, "127.0.0.1:8090",
                                 alert_rules_file(layout))  # fmt: skip
    config = yaml.safe_load(text)
    assert config["rule_files"] == [str(alert_rules_file(layout))]
    [target] = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert target == f"127.0.0.1:{slot.alertmanager_port}"
    (tmp_path / "prometheus.yml").write_text(text)
    check(["promtool", "check", "config", str(tmp_path / "prometheus.yml")])
    check(["amtool", "check-config", str(alertmanager_yml(layout))])
    hook = yaml.safe_load(alertmanager_yml(layout).read_text())["receivers"][0]
    [url] = [h["url"] for h in hook["webhook_configs"]]
    assert url == "http://127.0.0.1:8090/api/v1/alerts/alertmanager"
    assert stat.S_IMODE(alertmanager_token(layout).stat().st_mode) == 0o600


@pytest.mark.parametrize("in_root", [False, True])
def test_mailprog_wrapper_settings_and_slurm_conf(tmp_path: Path, in_root: bool) -> None:
    layout = Layout(tmp_path)
    program = write_mailprog(layout, "127.0.0.1:8080", in_root=in_root)
    wrapper = program.read_text()
    assert f"--config {mail_config(layout)}" in wrapper
    if in_root:
        assert "exec /bin/bash " in wrapper and (layout.libexec / "mailprog.sh").exists()
    else:
        assert f"exec {sys.executable} -m hpcportal.slurm_mail.mailprog" in wrapper
    assert "url = http://127.0.0.1:8080/api/v1/slurm-mail" in mail_config(layout).read_text()
    assert stat.S_IMODE(mail_secret(layout).stat().st_mode) == 0o600
    secret = mail_secret(layout).read_text()
    write_mailprog(layout, "127.0.0.1:8080", in_root=in_root)
    assert mail_secret(layout).read_text() == secret  # made once
    nodes = cluster_nodes(False)
    before = render_slurm_conf(layout, "host", nodes)
    after = render_slurm_conf(layout, "host", nodes, mail_prog=program)
    assert "MailProg=/bin/true" in before and f"MailProg={program}" in after
    assert only_reconfigurable_changes(before, after)
