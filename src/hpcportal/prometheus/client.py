"""The one place that talks to Prometheus: an HTTP client with timeouts whose answers
are decoded strictly (``models``) and whose failures are the portal's typed errors.

- cannot connect, or no answer within the timeout: ``PrometheusUnavailable`` (503),
  saying which and where (the URL without its password);
- Prometheus refused the request (``{"status": "error"}`` with 400 or 422, a PromQL
  error, too many points): ``PrometheusBadQuery`` (422) with Prometheus' own message;
  its query timeout (503 ``timeout``/``canceled``) is ``PrometheusUnavailable``;
- anything else (HTML from a proxy, a reshaped answer): ``PrometheusUnreadable`` (502).

Every request is counted by endpoint and outcome (``requests`` here and
``hpcportal_prometheus_requests_total`` in ``/metrics``), so a benchmark or a test can
tell how often the portal asked.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram
from pydantic import TypeAdapter, ValidationError

from hpcportal.errors import PrometheusBadQuery, PrometheusUnavailable, PrometheusUnreadable
from hpcportal.prometheus.models import (
    Alert,
    Alerts,
    BuildInfo,
    Config,
    Health,
    Labels,
    Matrix,
    QueryResult,
    RuleGroups,
    Targets,
    Vector,
    Wire,
)

log = logging.getLogger(__name__)

REQUESTS = PromCounter(
    "hpcportal_prometheus_requests",
    "Requests the portal sent to Prometheus",
    ["endpoint", "outcome"],
)
SECONDS = Histogram(
    "hpcportal_prometheus_request_seconds", "Duration of requests to Prometheus", ["endpoint"]
)

T = TypeVar("T")
Params = Sequence[tuple[str, str]]


class Success(Wire, Generic[T]):
    """``{"status": "success", "data": ..., "warnings": [...]}``."""

    status: Literal["success"]
    data: T
    warnings: list[str] = []


class Failure(Wire):
    status: Literal["error"]
    error_type: str
    error: str


_FAILURE = TypeAdapter(Failure)


class PrometheusClient:
    """Prometheus' HTTP API at ``url`` (``http://prometheus:9090``, maybe with a path
    prefix or ``user:password@``); ``timeout`` seconds per request, also sent to
    Prometheus as the query's own ``timeout`` so it stops working when we stop waiting.
    """

    def __init__(
        self, url: str, timeout: float, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.where = masked_url(self.url)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        #: Requests sent, by endpoint (``query_range``, ``label_values``, ...).
        self.requests: Counter[str] = Counter()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                transport=self._transport,
                follow_redirects=False,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- the API --------------------------------------------------------------------

    async def query(self, promql: str, time: float | None = None) -> Success[QueryResult]:
        params = [("query", promql), ("timeout", f"{self.timeout:g}s")]
        if time is not None:
            params.append(("time", _num(time)))
        return await self._api("query", "/api/v1/query", params, Success[QueryResult])

    async def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> Success[Matrix]:
        params = [("query", promql), ("start", _num(start)), ("end", _num(end)),
                  ("step", _num(step)), ("timeout", f"{self.timeout:g}s")]  # fmt: skip
        return await self._api("query_range", "/api/v1/query_range", params, Success[Matrix])

    async def labels(
        self, match: Sequence[str] = (), start: float | None = None, end: float | None = None
    ) -> Success[list[str]]:
        params = _window([("match[]", m) for m in match], start, end)
        return await self._api("labels", "/api/v1/labels", params, Success[list[str]])

    async def label_values(
        self,
        name: str,
        match: Sequence[str] = (),
        start: float | None = None,
        end: float | None = None,
    ) -> Success[list[str]]:
        params = _window([("match[]", m) for m in match], start, end)
        path = f"/api/v1/label/{httpx.URL(name).raw_path.decode()}/values"
        return await self._api("label_values", path, params, Success[list[str]])

    async def series(
        self, match: Sequence[str], start: float | None = None, end: float | None = None
    ) -> Success[list[Labels]]:
        params = _window([("match[]", m) for m in match], start, end)
        return await self._api("series", "/api/v1/series", params, Success[list[Labels]])

    async def targets(self, state: str | None = None) -> Success[Targets]:
        params = [("state", state)] if state else []
        return await self._api("targets", "/api/v1/targets", params, Success[Targets])

    async def rules(self, kind: str | None = None) -> Success[RuleGroups]:
        params = [("type", kind)] if kind else []
        return await self._api("rules", "/api/v1/rules", params, Success[RuleGroups])

    async def alerts(self) -> Success[Alerts]:
        return await self._api("alerts", "/api/v1/alerts", [], Success[Alerts])

    async def config(self) -> Success[Config]:
        return await self._api("config", "/api/v1/status/config", [], Success[Config])

    async def buildinfo(self) -> Success[BuildInfo]:
        return await self._api("buildinfo", "/api/v1/status/buildinfo", [], Success[BuildInfo])

    async def health(self) -> Health:
        """``/-/healthy`` and ``/-/ready``; a server that cannot be reached raises
        ``PrometheusUnavailable``, one that answers but is not ready says so."""
        healthy = await self._get("healthy", "/-/healthy", [])
        ready = await self._get("ready", "/-/ready", [])
        version = None
        if healthy.status_code == 200:
            try:
                version = (await self.buildinfo()).data.version
            except PrometheusUnreadable:  # older servers have no buildinfo
                version = None
        return Health(
            healthy=healthy.status_code == 200,
            ready=ready.status_code == 200,
            message=(ready.text if ready.status_code != 200 else healthy.text).strip()[:300],
            version=version,
        )

    async def alerts_list(self) -> list[Alert]:
        return (await self.alerts()).data.alerts

    # --- the plumbing -----------------------------------------------------------------

    async def _get(self, endpoint: str, path: str, params: Params) -> httpx.Response:
        self.requests[endpoint] += 1
        try:
            with SECONDS.labels(endpoint).time():
                response = await self._client().get(self.url + path, params=list(params))
        except httpx.TimeoutException as exc:
            REQUESTS.labels(endpoint, "timeout").inc()
            raise PrometheusUnavailable(
                f"Prometheus at {self.where} did not answer within {self.timeout:g} s."
            ) from exc
        except httpx.HTTPError as exc:
            REQUESTS.labels(endpoint, "unreachable").inc()
            reason = str(exc) or type(exc).__name__
            raise PrometheusUnavailable(
                f"Prometheus at {self.where} cannot be reached: {reason}."
            ) from exc
        REQUESTS.labels(endpoint, "ok" if response.status_code < 400 else "refused").inc()
        return response

    async def _api(self, endpoint: str, path: str, params: Params, shape: type[T]) -> T:
        response = await self._get(endpoint, path, params)
        return _decode(self.where, path, response, shape)


def instant_vector(url: str, promql: str, timeout: float) -> Vector:
    """One instant query whose answer must be a vector, blocking: for code that runs on
    a worker thread (the disk watcher's node scratch). Errors as ``PrometheusClient``'s."""
    where, path = masked_url(url), "/api/v1/query"
    try:
        with httpx.Client(timeout=timeout) as http, SECONDS.labels("query").time():
            response = http.get(url.rstrip("/") + path, params={"query": promql})
    except httpx.TimeoutException as exc:
        REQUESTS.labels("query", "timeout").inc()
        raise PrometheusUnavailable(
            f"Prometheus at {where} did not answer within {timeout:g} s."
        ) from exc
    except httpx.HTTPError as exc:
        REQUESTS.labels("query", "unreachable").inc()
        reason = str(exc) or type(exc).__name__
        raise PrometheusUnavailable(f"Prometheus at {where} cannot be reached: {reason}.") from exc
    REQUESTS.labels("query", "ok" if response.status_code < 400 else "refused").inc()
    data = _decode(where, path, response, Success[QueryResult]).data
    if not isinstance(data, Vector):
        raise PrometheusUnreadable(
            f"Prometheus answered a {data.result_type} result, not a vector."
        )
    return data


def _decode(where: str, path: str, response: httpx.Response, shape: type[T]) -> T:
    body = response.content
    if response.status_code >= 400 or b'"status":"error"' in body[:40]:
        raise _failure(where, response)
    try:
        return TypeAdapter(shape).validate_json(body)
    except ValidationError as exc:
        log.warning("Unreadable answer from Prometheus %s: %s", path, exc)
        raise PrometheusUnreadable(
            f"Prometheus at {where} answered {path} in a form the portal cannot "
            f"read ({_first_error(exc)})."
        ) from exc


def _failure(where: str, response: httpx.Response) -> Exception:
    try:
        failure = _FAILURE.validate_json(response.content)
    except ValidationError:
        return PrometheusUnreadable(
            f"Prometheus at {where} answered HTTP {response.status_code} without its "
            f"API's format: {response.text[:200]!r}"
        )
    message = f"Prometheus refused the query ({failure.error_type}): {failure.error[:500]}"
    if failure.error_type in {"timeout", "canceled"} or response.status_code == 503:
        return PrometheusUnavailable(
            f"Prometheus at {where} gave up ({failure.error_type}): {failure.error[:300]}"
        )
    if response.status_code in {400, 422}:
        return PrometheusBadQuery(message)
    return PrometheusUnreadable(f"Prometheus at {where}: {message}")


def masked_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _window(params: list[tuple[str, str]], start: float | None, end: float | None) -> Params:
    if start is not None:
        params.append(("start", _num(start)))
    if end is not None:
        params.append(("end", _num(end)))
    return params


def decode(body: bytes, shape: type[T]) -> T:
    """Decode one recorded answer as the client would (for tests and tools)."""
    return TypeAdapter(shape).validate_json(body)


def param_list(params: Mapping[str, Any]) -> Params:
    return [(k, str(v)) for k, v in params.items()]
