"""The privileged boundary: the one way the portal acts as a Unix user.

Services and routers use :class:`AsUser` (``client.py``: typed operations returning
dataclasses) and hand :class:`RunAs` around; the helper's wire format stays inside
this package (``client.py``, ``boundary.py``, ``stream.py`` and ``answers.py``).

``hpcportal check`` asks whether the installed helper is this version's program
(``installed_helper_matches``) and where its sudoers rule lives (``SUDOERS_FILE``)
here, not of the installer's or assembler's modules."""

from hpcportal.runas.boundary import Completed, RunAs, RunAsTimeout
from hpcportal.runas.client import AsUser
from hpcportal.runas.install import SUDOERS_FILE, installed_helper_matches
from hpcportal.runas.stream import HelperStream
from hpcportal.runas.users import RunAsRefused, check_target_user

__all__ = [
    "SUDOERS_FILE",
    "AsUser",
    "Completed",
    "HelperStream",
    "RunAs",
    "RunAsRefused",
    "RunAsTimeout",
    "check_target_user",
    "installed_helper_matches",
]
