"""A new server takes its place (``hpcportal cluster join``): one server → N+1.

The server is added to ``cluster_config.yaml`` as a new item at the end of
``servers:``, inserted as text right after the last item, so every comment and the
layout of the rest of the file stay as the operator wrote them (a YAML round-trip
through a parser would drop the comments; ruamel.yaml keeps them but is another
dependency for one append). The new text is validated before anything is written (a
duplicate name or address, or SQLite with a second server, is refused with its line),
then written atomically (temporary file, rename) and the files to install rendered.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml  # type: ignore[import-untyped,unused-ignore]

from hpcportal.services.operations.cluster_config import ClusterConfig
from hpcportal.services.operations.config_file import (
    ConfigInvalid,
    ConfigIssue,
    load_config_file,
    load_config_text,
)
from hpcportal.services.operations.render import Rendered, render_all

#: The schema's host name (``cluster_config.HostName``), checked before it is written.
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Joined:
    config: ClusterConfig
    added: str
    rendered: Rendered
    steps: list[str]


def add_server_text(text: str, name: str, address: str, port: int, source: str) -> tuple[str, str]:
    """``text`` with one more item at the end of its block ``servers:`` list, and the item.

    ``name`` and ``address`` must already be checked (a host name, an IP address): they
    are written into the file as they are.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    servers = None
    if isinstance(root, yaml.MappingNode):
        servers = next((v for k, v in root.value if k.value == "servers"), None)
    if not isinstance(servers, yaml.SequenceNode) or servers.flow_style or not servers.value:
        issue = ConfigIssue(
            1, 1, "servers", "join appends to a block list ('- name: ...' items); edit by hand"
        )
        raise ConfigInvalid(source, [issue])
    indent = " " * servers.start_mark.column
    last_line = _last_line(servers.value[-1])
    lines = text.splitlines(keepends=True)
    if lines and not lines[last_line].endswith("\n"):
        lines[last_line] += "\n"
    block = f"{indent}- name: {name}\n{indent}  address: {address}\n{indent}  port: {port}\n"
    return "".join([*lines[: last_line + 1], block, *lines[last_line + 1 :]]), block


def _last_line(node: yaml.Node) -> int:
    """The 0-based line where ``node``'s own text ends (not the comments after it)."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        if not node.value:
            break
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    end = node.end_mark
    # A mark at column 0 is the start of the next line (a block scalar's end).
    return int(end.line - 1 if end.column == 0 and end.line > 0 else end.line)


def join(path: Path, name: str, address: str, port: int = 8080) -> Joined:
    """Add the server to the file at ``path`` (validated first), and render for it."""
    load_config_file(path)  # the current file must be valid before it is changed
    if not HOST_NAME.fullmatch(name):
        issue = ConfigIssue(0, 0, "--name", f"{name!r} is not a host name (letters, digits, '-')")
        raise ConfigInvalid(str(path), [issue])
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        issue = ConfigIssue(0, 0, "--address", f"{address!r} is not an IP address")
        raise ConfigInvalid(str(path), [issue]) from None
    text = path.read_text(encoding="utf-8")
    new_text, added = add_server_text(text, name, str(parsed), port, str(path))
    config = load_config_text(new_text, str(path))  # refuses duplicates, SQLite with two
    _replace(path, new_text)
    rendered = render_all(config)
    return Joined(config, added, rendered, _steps(config, name))


def _replace(path: Path, text: str) -> None:
    """Write ``text`` in place of ``path`` atomically, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _steps(config: ClusterConfig, name: str) -> list[str]:
    steps = [
        "Copy the updated cluster_config.yaml to every server and front end.",
        f"On {name}: install hpcportal, the same secrets files as the other servers "
        f"({config.secrets.jwt_secret_file}, {config.secrets.secret_key_file}) and "
        f"{config.portal.environment_file}; install systemd/{name}/hpcportal.service in "
        "/etc/systemd/system/ and run systemctl enable --now hpcportal.",
        "On each front end: install the new haproxy/haproxy.cfg and systemctl reload "
        "haproxy (open connections are kept).",
    ]
    if config.database.engine == "postgresql":
        steps.append(
            "On each PostgreSQL host: replace the hpcportal lines of pg_hba.conf with "
            "postgresql/pg_hba.conf, then SELECT pg_reload_conf()."
        )
    steps.append("Check: hpcportal cluster discover, then hpcportal cluster status.")
    return steps
