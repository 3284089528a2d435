"""The privileged boundary: the one way the portal acts as a Unix user.

Services and routers use :class:`AsUser` (``client.py``: typed operations returning
dataclasses) and hand :class:`RunAs` around; the helper's wire format stays inside
this package (``client.py`` and ``boundary.py``)."""

from hpcportal.runas.boundary import (
    Completed,
    HelperStream,
    RunAs,
    RunAsRefused,
    RunAsTimeout,
    check_target_user,
)
from hpcportal.runas.client import AsUser

__all__ = [
    "AsUser",
    "Completed",
    "HelperStream",
    "RunAs",
    "RunAsRefused",
    "RunAsTimeout",
    "check_target_user",
]
