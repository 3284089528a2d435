"""The dev cluster's ``MailProg``: Slurm's job mail goes to the portal (issue 15.4).

slurm.conf names ``libexec/mailprog``, a wrapper that runs the program the portal
ships with this cluster's settings (``etc/slurm-mail.conf``: the portal target's
``/api/v1/slurm-mail`` and the secret ``etc/slurm-mail.secret``, made once, 0600; a
portal of this cluster sets ``slurm_mail_secret_file`` to it):

- on the host's 22.05, ``hpcportal-mailprog`` itself, through the interpreter running
  ``dev-cluster up`` (the portal's venv);
- on 24.11 and 26.05, whose slurmctld runs chrooted in a Debian root (which has bash
  but no Python, and sees only the cluster directory of this host), its bash twin
  ``mailprog.sh``, copied into ``libexec``.
"""

from __future__ import annotations

import shlex
import sys
from importlib import resources
from pathlib import Path

from hpcportal.devcluster.alerting import ensure_token
from hpcportal.devcluster.files import ensure_dir, write_if_changed
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.templates import HEADER

MAIL_PATH = "/api/v1/slurm-mail"


def mailprog(layout: Layout) -> Path:
    return layout.libexec / "mailprog"


def mailprog_sh(layout: Layout) -> Path:
    return layout.libexec / "mailprog.sh"


def mail_config(layout: Layout) -> Path:
    return layout.etc / "slurm-mail.conf"


def mail_secret(layout: Layout) -> Path:
    """The MailProg's shared secret (the portal's ``slurm_mail_secret_file``)."""
    return layout.etc / "slurm-mail.secret"


def render_mail_config(layout: Layout, portal_target: str) -> str:
    return "\n".join(
        [
            HEADER,
            f"url = http://{portal_target}{MAIL_PATH}",
            f"secret_file = {mail_secret(layout)}",
            "timeout = 5",
            "",
        ]
    )


def render_wrapper(layout: Layout, *, in_root: bool) -> str:
    config = shlex.quote(str(mail_config(layout)))
    if in_root:
        command = f"exec /bin/bash {shlex.quote(str(mailprog_sh(layout)))} --config {config}"
    else:
        python = shlex.quote(sys.executable)
        command = f"exec {python} -m hpcportal.slurm_mail.mailprog --config {config}"
    return f'#!/bin/sh\n{HEADER}\n# Slurm\'s MailProg: job mail to the portal.\n{command} "$@"\n'


def write_mailprog(layout: Layout, portal_target: str, *, in_root: bool) -> Path:
    """The wrapper (0755), the settings and the secret; returns the MailProg path."""
    ensure_dir(layout.libexec)
    ensure_dir(layout.etc)
    ensure_token(mail_secret(layout))
    write_if_changed(mail_config(layout), render_mail_config(layout, portal_target))
    if in_root:
        script = (resources.files("hpcportal.slurm_mail") / "mailprog.sh").read_text()
        write_if_changed(mailprog_sh(layout), script, mode=0o755)
    write_if_changed(mailprog(layout), render_wrapper(layout, in_root=in_root), mode=0o755)
    return mailprog(layout)
