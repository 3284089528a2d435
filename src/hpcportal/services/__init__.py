"""Use cases: what the portal does, independent of HTTP."""
