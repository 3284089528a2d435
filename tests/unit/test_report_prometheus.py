"""The report kinds' Prometheus reads on answers in Prometheus' own format, served by a
stand-in for Prometheus (httpx.MockTransport; no Prometheus in unit tests; the
integration tests of the monitoring console use a real one): partition utilisation of
the system report from the portal's gauges, and idle GPUs of the efficiency report
from the mean GPU utilisation of jobs the idle-GPU check never flagged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from hpcportal.config import Settings
from hpcportal.db.session import Database
from hpcportal.prometheus.client import PrometheusClient
from hpcportal.services.monitoring.service import MonitoringService
from hpcportal.services.reports.document import ReportDocument, Table
from hpcportal.services.reports.kinds import build_report
from hpcportal.services.reports.spec import ReportSpec, Viewer
from tests.unit.report_seed import at, job, rollup, spec

ADMIN = Viewer("carol", is_admin=True)
END = 1_764_000_000.0  # on a 15 s step


def success(kind: str, result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": kind, "result": result}}


def matrix(series: list[tuple[dict[str, str], list[tuple[float, str]]]]) -> dict[str, Any]:
    return success("matrix", [{"metric": m, "values": [[t, v] for t, v in values]}
                              for m, values in series])  # fmt: skip


CPUS = matrix([
    ({"partition": "gpu", "kind": "allocated"}, [(END - 30, "4"), (END, "8")]),
    ({"partition": "gpu", "kind": "total"}, [(END - 30, "16"), (END, "16")]),
    ({"partition": "normal", "kind": "total"}, [(END, "64")]),
])  # fmt: skip
GPUS = matrix([
    ({"partition": "gpu", "kind": "allocated"}, [(END, "1")]),
    ({"partition": "gpu", "kind": "total"}, [(END, "2")]),
])  # fmt: skip
#: Mean GPU utilisation per job id, as the stand-in answers it.
GPU_MEANS = {"301": "2.5", "302": "80"}


class StandInPrometheus:
    """Answers the names, range and instant queries the kinds send; keeps them."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.seen: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path, query = request.url.path, request.url.params.get("query", "")
        if path == "/api/v1/label/__name__/values":
            return httpx.Response(200, json={"status": "success", "data": self.names})
        if path == "/api/v1/query_range":
            return httpx.Response(200, json=CPUS if "partition_cpus" in query else GPUS)
        if path == "/api/v1/query":
            found = [v for job, v in GPU_MEANS.items() if f'hpc_job="{job}"' in query]
            at_ = float(request.url.params["time"])
            result = [{"metric": {}, "value": [at_, found[0]]}] if found else []
            return httpx.Response(200, json=success("vector", result))
        return httpx.Response(404, json={"status": "error", "error": path})

    def factory(self, settings: Settings) -> MonitoringService:
        client = PrometheusClient("http://prom.test", 2.0,
                                  transport=httpx.MockTransport(self.handle))  # fmt: skip
        return MonitoringService(settings, client)


def settings() -> Settings:
    return Settings(database_url="sqlite://", jwt_secret=SecretStr("x" * 32),
                    prometheus_url="http://prom.test", prometheus_min_step=15.0)  # fmt: skip


def table(doc: ReportDocument, title: str) -> Table:
    return next(t for sec in doc.sections for t in sec.tables if t.title == title)


def test_partition_utilisation_from_the_portal_gauges(database: Database) -> None:
    prom = StandInPrometheus(["hpcportal_slurm_partition_cpus",
                              "hpcportal_slurm_partition_gpus"])  # fmt: skip
    end = datetime.fromtimestamp(END, UTC)
    hour = ReportSpec.model_validate({
        "kind": "system", "compare_previous": False,
        "period": {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()},
    })  # fmt: skip
    with database.session() as s:
        doc = build_report(hour, ADMIN, s, settings=settings(), adapter=None,
                           monitoring_factory=prom.factory)  # fmt: skip
    use = {r[0]: r[1:] for r in table(doc, "Utilisation by partition").rows}
    assert use["gpu"] == [pytest.approx(0.375), 0.5, 0.5, 0.5]  # cpu mean, peak; gpu
    assert use["normal"] == [None, None, None, None]
    charts = doc.sections[0].charts
    assert [c.title for c in charts] == ["CPUs allocated / total by partition",
                                         "GPUs allocated / total by partition"]  # fmt: skip
    assert [s.name for s in charts[0].series] == ["gpu"]
    assert charts[0].series[0].values[-1] == 50.0
    ranges = [r.url.params["query"] for r in prom.seen if r.url.path.endswith("query_range")]
    assert ranges == ["max by (partition, kind) (hpcportal_slurm_partition_cpus)",
                      "max by (partition, kind) (hpcportal_slurm_partition_gpus)"]  # fmt: skip
    assert any(s.name == "Prometheus" for s in doc.sources)


def test_without_the_gauges_the_section_says_why(database: Database) -> None:
    prom = StandInPrometheus(["up"])
    with database.session() as s:
        doc = build_report(spec("system", compare_previous=False), ADMIN, s,
                           settings=settings(), monitoring_factory=prom.factory)  # fmt: skip
    assert (doc.sections[0].text or "").startswith("No history: Prometheus has no "
                                                   "hpcportal_slurm_partition_cpus")  # fmt: skip


def test_idle_gpus_found_in_prometheus_are_wasted(database: Database) -> None:
    prom = StandInPrometheus(["DCGM_FI_DEV_GPU_UTIL"])
    with database.session() as s:
        rollup(s, at(10), "bob", "chem", "gpu", jobs=2, started=2, cpu_seconds=7200,
               cpu_time_seconds=3600.0, wall_seconds=7200, requested_seconds=7200,
               gpu_seconds=4 * 3600)  # fmt: skip
        job(s, 301, "bob", "chem", "gpu", at(10, hour=2), elapsed=3600, gpus=1)  # 2.5 %: idle
        job(s, 302, "bob", "chem", "gpu", at(10, hour=3), elapsed=3600, gpus=3)  # 80 %: busy
        s.commit()
    with database.session() as s:
        doc = build_report(spec("efficiency", compare_previous=False), ADMIN, s,
                           settings=settings(), monitoring_factory=prom.factory)  # fmt: skip
    overview = {r[0]: r[1] for r in table(doc, "Overview").rows}
    assert overview["Wasted GPU hours"] == 1.0
    assert overview["Wasted GPU share"] == pytest.approx(0.25)
    asked = [r.url.params["query"] for r in prom.seen if r.url.path == "/api/v1/query"]
    assert len(asked) == 2 and all("avg_over_time" in q and "[3600s:15s]" in q for q in asked)
    assert "2 newest GPU jobs" in (doc.sections[0].text or "")
    assert any(s.name == "Prometheus" for s in doc.sources)


def test_json_of_the_stand_in_is_prometheus_shaped() -> None:
    assert json.loads(json.dumps(CPUS))["data"]["resultType"] == "matrix"
