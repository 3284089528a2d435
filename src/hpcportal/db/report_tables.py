"""Tables of the report area: the usage store, generated reports and their schedules.

Kept apart so ``models.py`` stays short; ``models.py`` imports this module, which
registers the tables on the shared metadata.
"""

from __future__ import annotations

from hpcportal.db.base import Base, UtcDateTime  # noqa: F401
