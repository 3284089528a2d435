"""Acting as the user: how the portal becomes a user, and whom it never becomes.

The method (``runuser`` as root, else ``sudo`` through the installed helper), the
helper's path, the accounts always refused and the optional group of people the portal
may act as. Used by ``slurm/executor.py`` (which runs every command as the user),
``hpcportal runas install`` (``cli/runas.py``, which fixes the deny list and group in
the helper and the sudoers rule) and ``hpcportal check``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field


class RunAsSettings(BaseModel):
    """How the portal runs commands as a user (``hpcportal.runas``)."""

    # Acting as the user (hpcportal.runas)
    runas_method: Literal["auto", "runuser", "sudo"] = Field(
        default="auto",
        description="How to become a user: runuser (portal runs as root), sudo (service "
        "account with the documented sudoers rule), auto = runuser as root, else sudo.",
    )
    runas_helper: Path = Field(
        default=Path("/usr/local/libexec/hpcportal-runas"),
        description="The installed helper that sudo runs as the user (hpcportal runas install).",
    )
    runas_deny_users: list[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]] = Field(
        default_factory=lambda: ["slurm", "slurmrestd", "munge", "nobody"],
        description="Accounts the portal never acts as, whatever their shell, besides root, "
        "UIDs below min_uid and slurm.conf's SlurmUser and SlurmdUser (always added). "
        "`hpcportal runas install` fixes them in the helper and the sudoers rule.",
    )
    runas_group: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_.-]{0,31}$",
        description="Unix group of the people the portal may act as: `hpcportal runas "
        "install` limits the sudoers rule to its members, so sudo refuses anyone else, "
        "and the portal answers 403 for them. Unset: any user the other rules allow.",
    )
