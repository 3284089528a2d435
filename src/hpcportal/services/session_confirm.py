"""Where the launch confirmation was imported from before ``services.sessions`` was a package.

It lives in ``services.sessions.confirm``; this name keeps importers working.
"""

from hpcportal.services.sessions.confirm import cancel_strays, confirm_launches

__all__ = ["cancel_strays", "confirm_launches"]
