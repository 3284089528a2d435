"""Monitoring: Prometheus behind the portal (``service``), the metric catalog
(``catalog``) and shared answers (``cache``)."""
