"""The privileged boundary: the one way the portal acts as a Unix user."""

from hpcportal.runas.boundary import (
    Completed,
    RunAs,
    RunAsRefused,
    RunAsTimeout,
    check_target_user,
)

__all__ = ["Completed", "RunAs", "RunAsRefused", "RunAsTimeout", "check_target_user"]
