"""A STAND-IN for a Prometheus server (Prometheus is not installed here).

It is a real HTTP server on 127.0.0.1 (loopback only, a free port) that answers
``GET /api/v1/query`` in Prometheus's HTTP API format
(https://prometheus.io/docs/prometheus/latest/querying/api/): ``{"status":
"success", "data": {"resultType": "vector", "result": [{"metric": {...}, "value":
[<unix time>, "<number as text>"]}]}}``, or ``{"status": "error", "errorType",
"error"}`` with an HTTP error status. It does not evaluate PromQL: a test sets the
series to answer (``node_exporter`` style) and reads back the queries received.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def node_fs_series(
    instance: str, size: int, free: int, avail: int, mountpoint: str = "/scratch"
) -> list[dict[str, Any]]:
    """The three ``node_filesystem_*_bytes`` series node_exporter has for a mount."""
    labels = {"instance": instance, "job": "node", "mountpoint": mountpoint,
              "device": "/dev/sdb1", "fstype": "xfs"}  # fmt: skip
    return [
        {"metric": {"__name__": f"node_filesystem_{name}_bytes", **labels}, "value": value}
        for name, value in (("size", size), ("free", free), ("avail", avail))
    ]


@dataclass
class PrometheusStandIn:
    """What to answer; every received query string is appended to ``queries``."""

    series: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error: str | None = None  # answer {"status": "error", ...} with ``status``
    raw: bytes | None = None  # answer these bytes instead (a broken server)
    delay: float = 0.0  # seconds before answering (a hung server)
    queries: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self) -> tuple[int, bytes]:
        if self.raw is not None:
            return self.status, self.raw
        if self.error is not None:
            body = {"status": "error", "errorType": "bad_data", "error": self.error}
            return self.status, json.dumps(body).encode()
        now = time.time()
        result = [{"metric": s["metric"], "value": [now, str(s["value"])]} for s in self.series]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return self.status, json.dumps(body).encode()


@contextmanager
def prometheus_standin(**answer: Any) -> Iterator[PrometheusStandIn]:
    """Serve a ``PrometheusStandIn`` on 127.0.0.1 for the duration of the block."""
    state = PrometheusStandIn(**answer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/api/v1/query":
                self.send_error(404)
                return
            state.queries.extend(parse_qs(parts.query).get("query", []))
            if state.delay:
                time.sleep(state.delay)
            status, body = state.answer()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="prometheus-standin", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
