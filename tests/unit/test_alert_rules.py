"""The alert rules the portal ships and the Alertmanager configuration it renders
(issue 15.5), checked by Prometheus' and Alertmanager's own tools: ``promtool check
rules``, ``promtool test rules`` (NodeDown fires after 30 s of up == 0, not before,
and only for the node that is down) and ``amtool check-config``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from hpcportal.services.operations.config_file import load_config_file
from hpcportal.services.operations.render import (
    ALERT_RECEIVER_PATH,
    alert_rules,
    render_alertmanager,
    render_all,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "cluster_config.example.yaml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/setup.sh's monitoring packages)")
    return path


def check(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_shipped_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules())
    out = check([tool("promtool"), "check", "rules", str(rules)])
    names = {r["alert"] for g in yaml.safe_load(alert_rules())["groups"] for r in g["rules"]}
    assert {"NodeDown", "NodeCpuBusy", "DiskFilling", "PortalReplicaDown", "PortalNoLeader",
            "PostgresReplicaLost", "GaleraNodeLost", "RedisReplicaLost",
            "SlurmControllerTakeover"} <= names  # fmt: skip
    assert f"SUCCESS: {len(names)} rules found" in out


def test_node_down_fires_after_30_seconds_for_that_node_only(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(alert_rules())
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "5s",
                "input_series": [
                    {"series": 'up{job="node", node="node001", instance="node001"}',
                     "values": "1 1 0 0 0 0 0 0 0 0 1 1"},
                    {"series": 'up{job="node", node="node002", instance="node002"}',
                     "values": "1x11"},
                ],
                "alert_rule_test": [
                    {"eval_time": "35s", "alertname": "NodeDown", "exp_alerts": []},
                    {"eval_time": "40s", "alertname": "NodeDown", "exp_alerts": [{
                        "exp_labels": {"severity": "critical", "job": "node",
                                       "node": "node001", "instance": "node001"},
                        "exp_annotations": {"summary": "Node node001 is down: its node "
                                            "exporter has not answered for 30 s"},
                    }]},
                    {"eval_time": "55s", "alertname": "NodeDown", "exp_alerts": []},
                ],
            }
        ],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    check([tool("promtool"), "test", "rules", str(tmp_path / "test.yml")])


def test_the_rendered_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    rendered = render_all(load_config_file(EXAMPLE))
    text = rendered.files["alertmanager/alertmanager.yml"]
    assert rendered.files["prometheus/hpcportal-alert-rules.yml"] == alert_rules()
    (tmp_path / "alertmanager.yml").write_text(text)
    check([tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml")])
    config = yaml.safe_load(text)
    [receiver] = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    for hook in receiver["webhook_configs"]:
        assert hook["url"].endswith(ALERT_RECEIVER_PATH) and hook["send_resolved"] is True
        assert hook["http_config"]["authorization"]["type"] == "Bearer"
        assert hook["http_config"]["authorization"]["credentials_file"].startswith("/")


def test_several_receivers_and_short_intervals_pass_amtool(tmp_path: Path) -> None:
    urls = [f"http://127.0.0.1:{p}{ALERT_RECEIVER_PATH}" for p in (8080, 8081)]
    text = render_alertmanager(urls, str(tmp_path / "token"), group_wait="1s",
                               group_interval="2s", repeat_interval="1h")  # fmt: skip
    (tmp_path / "alertmanager.yml").write_text(text)
    check([tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml")])
    hooks = yaml.safe_load(text)["receivers"][0]["webhook_configs"]
    assert [h["url"] for h in hooks] == urls


def test_usage_store_behind_fires_for_the_cluster_no_replica_keeps_current(
    tmp_path: Path,
) -> None:
    """The gauge of the replica that leads now counts (max over replicas): a deposed
    leader's frozen value raises nothing; a cluster whose every value froze raises the
    alert once it is six hours behind for 15 minutes."""
    (tmp_path / "rules.yml").write_text(alert_rules())
    gauge = "hpcportal_usage_store_complete_until_seconds"
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "5m",
        "tests": [
            {
                "interval": "5m",
                "input_series": [
                    # "dev": nothing stored since time 0.
                    {"series": f'{gauge}{{job="hpcportal", instance="a", cluster="dev"}}',
                     "values": "0x120"},
                    # "other": replica a stopped at 0, replica b (the leader now) keeps up.
                    {"series": f'{gauge}{{job="hpcportal", instance="a", cluster="other"}}',
                     "values": "0x120"},
                    {"series": f'{gauge}{{job="hpcportal", instance="b", cluster="other"}}',
                     "values": "0+300x120"},
                ],
                "alert_rule_test": [
                    {"eval_time": "6h", "alertname": "UsageStoreBehind", "exp_alerts": []},
                    {"eval_time": "6h10m", "alertname": "UsageStoreBehind", "exp_alerts": []},
                    {"eval_time": "6h20m", "alertname": "UsageStoreBehind", "exp_alerts": [{
                        "exp_labels": {"severity": "warning", "cluster": "dev"},
                        "exp_annotations": {"summary": (
                            "Usage reports of dev are 6h 20m 0s behind: the leader has not "
                            "read finished jobs from sacct since (see "
                            'hpcportal_usage_ingest_windows_total{outcome="failed"} and '
                            "hpcportal reports store)")},
                    }]},
                ],
            }
        ],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    check([tool("promtool"), "test", "rules", str(tmp_path / "test.yml")])
