"""``hpcportal-mailprog``: Slurm's ``MailProg`` that hands each job mail to the portal.

slurmctld runs it as ``hpcportal-mailprog -s "<subject>" <recipient>`` (slurm.conf
``MailProg=``), in the environment it builds for mail (``SLURM_JOB_ID``,
``SLURM_JOB_USER``, ...; not slurmctld's own). Where to post and with which secret is
read from a small file, ``/etc/hpcportal/slurm-mail.conf`` (or ``--config PATH``
before Slurm's arguments)::

    url = https://portal.example.org/api/v1/slurm-mail
    secret_file = /etc/hpcportal/slurm-mail.secret
    timeout = 5

slurmctld waits for its MailProg (in a mail thread, up to its MailProg timeout), so
this program never retries and never blocks long: one POST with a short timeout,
then exit 0 whatever happened; a failure is written to stderr (slurmctld logs it)
and to syslog. A subject that is no Slurm job mail is not posted at all.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcportal.slurm_mail.subject import parse_subject

DEFAULT_CONFIG = Path("/etc/hpcportal/slurm-mail.conf")
DEFAULT_SECRET_FILE = Path("/etc/hpcportal/slurm-mail.secret")
DEFAULT_URL = "http://127.0.0.1:8080/api/v1/slurm-mail"
DEFAULT_TIMEOUT = 5.0
#: Never wait longer than this, whatever the file says.
MAX_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class MailProgConfig:
    url: str = DEFAULT_URL
    secret_file: Path = DEFAULT_SECRET_FILE
    timeout: float = DEFAULT_TIMEOUT


def read_config(path: Path) -> MailProgConfig:
    """``key = value`` lines (``#`` comments); a missing file means the defaults."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return MailProgConfig()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not a 'key = value' line: {line!r}")
        values[key.strip()] = value.strip()
    unknown = set(values) - {"url", "secret_file", "timeout"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    timeout = float(values.get("timeout", DEFAULT_TIMEOUT))
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"{path}: timeout must be in (0, {MAX_TIMEOUT:g}] seconds")
    url = values.get("url", DEFAULT_URL)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{path}: url must be http:// or https://")
    return MailProgConfig(url, Path(values.get("secret_file", str(DEFAULT_SECRET_FILE))), timeout)


def parse_args(argv: Sequence[str]) -> tuple[Path, str, str]:
    """(config file, subject, recipient) from ``[--config PATH] -s SUBJECT RECIPIENT``."""
    args = list(argv)
    config = DEFAULT_CONFIG
    if len(args) >= 2 and args[0] == "--config":
        config, args = Path(args[1]), args[2:]
    if len(args) != 3 or args[0] != "-s":
        raise ValueError("usage: hpcportal-mailprog [--config FILE] -s SUBJECT RECIPIENT")
    return config, args[1], args[2]


def payload(subject: str, recipient: str, env: Mapping[str, str]) -> dict[str, str | None]:
    """What the portal receives: the subject as Slurm wrote it (the portal parses it
    again: it trusts the secret, not this program's reading), the recipient, and the
    job's owner and id from the mail environment Slurm gives (22.05 and later)."""
    return {
        "subject": subject,
        "recipient": recipient,
        "job_user": env.get("SLURM_JOB_USER") or None,
        "job_id": env.get("SLURM_JOB_ID") or None,
    }


def post(config: MailProgConfig, body: dict[str, str | None]) -> int:
    """One POST; the HTTP status (an error status raises ``HTTPError``)."""
    secret = config.secret_file.read_text(encoding="utf-8").strip()
    request = urllib.request.Request(  # noqa: S310 (read_config allows http(s) only)
        config.url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
    )
    with urllib.request.urlopen(request, timeout=config.timeout) as answer:  # noqa: S310
        return int(answer.status)


def _complain(message: str) -> None:
    print(f"hpcportal-mailprog: {message}", file=sys.stderr)
    try:
        import syslog

        syslog.openlog("hpcportal-mailprog", 0, syslog.LOG_MAIL)
        syslog.syslog(syslog.LOG_WARNING, message)
    except (ImportError, OSError):  # no syslog here: stderr is enough
        pass


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Do the work; always 0 (slurmctld logs a MailProg's failure and nothing more)."""
    try:
        config_path, subject, recipient = parse_args(argv)
        if parse_subject(subject) is None:
            _complain(f"not a Slurm job mail, not posted: {subject[:200]!r}")
            return 0
        post(read_config(config_path), payload(subject, recipient, env))
    except urllib.error.HTTPError as exc:
        _complain(f"the portal refused the mail: HTTP {exc.code}")
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        _complain(f"could not hand the mail to the portal: {exc}")
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:], os.environ))


if __name__ == "__main__":
    main()
