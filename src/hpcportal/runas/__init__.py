"""The privileged boundary: the one way the portal acts as a Unix user."""

from hpcportal.runas.boundary import RunAsRefused, check_target_user, wrap_argv

__all__ = ["RunAsRefused", "check_target_user", "wrap_argv"]
