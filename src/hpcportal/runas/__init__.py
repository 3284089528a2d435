"""The privileged boundary: the one way the portal acts as a Unix user.

Services and routers use :class:`AsUser` (``client.py``: typed operations returning
dataclasses) and hand :class:`RunAs` around; the helper's wire format stays inside
this package (``client.py``, ``boundary.py``, ``stream.py`` and ``answers.py``)."""

from hpcportal.runas.boundary import Completed, RunAs, RunAsTimeout
from hpcportal.runas.client import AsUser
from hpcportal.runas.stream import HelperStream
from hpcportal.runas.users import RunAsRefused, check_target_user

__all__ = [
    "AsUser",
    "Completed",
    "HelperStream",
    "RunAs",
    "RunAsRefused",
    "RunAsTimeout",
    "check_target_user",
]
