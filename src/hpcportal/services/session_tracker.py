"""Where ``SessionTracker`` was imported from before ``services.sessions`` was a package.

The poll lives in ``services.sessions.tracker``; this name keeps importers working.
"""

from hpcportal.services.sessions.tracker import NO_TLS, SessionTracker, parse_connection

__all__ = ["NO_TLS", "SessionTracker", "parse_connection"]
