"""The Prometheus boundary: the one place that talks to Prometheus (as ``slurm/`` is
for Slurm). ``client.PrometheusClient`` sends the HTTP API's requests with timeouts
and decodes the answers strictly into ``models``; failures are the typed errors of
``hpcportal.errors`` (``PrometheusUnavailable`` 503, ``PrometheusBadQuery`` 422,
``PrometheusUnreadable`` 502)."""

from hpcportal.prometheus.client import PrometheusClient, Success

__all__ = ["PrometheusClient", "Success"]
