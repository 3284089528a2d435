"""Sample TLS front ends for the portal: nginx and Apache (``hpcportal config render-frontend``).

The portal listens on loopback (``host``/``port``) and leaves TLS, HTTP/2 and the
public port to a front end. What the front end must know about the portal, and why:

- WebSocket upgrade on the live socket (``/api/v1/ws``), the terminal
  (``/api/v1/terminal/sessions/*/ws``), the desktop viewers (``/api/v1/sessions/*/vnc``,
  ``/api/v1/shares/*/vnc``) and the node proxy (``/node/...``), with long read timeouts
  (a quiet terminal is not a dead one).
- No buffering of the output stream (``/api/v1/jobs/*/output/stream``, SSE; the portal
  also sends ``X-Accel-Buffering: no``) nor of the node proxy.
- Bodies as large as the portal accepts: ``upload_max_bytes`` times ``upload_max_files``
  for ``/api/v1/uploads``, ``tus_max_bytes`` for tus chunks, streamed to the portal
  rather than spooled; ``file_edit_max_bytes`` (plus room) elsewhere.
- ``X-Forwarded-For`` set to the client's address (replaced, never appended to what
  the client sent) and ``X-Forwarded-Proto: https``, for the portal's trusted-proxy
  handling.

The values are checked here, so a bad name or path is a clear error, not a broken file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined

from hpcportal.config import Settings
from hpcportal.services.uploads import request_limit

Kind = Literal["nginx", "apache"]
KINDS: tuple[Kind, ...] = ("nginx", "apache")

_SERVER_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
_HOST_PORT = re.compile(r"^(?:(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):)?(?P<port>\d{1,5})$")
#: The paths proxied as WebSockets (nginx regex; Apache's ProxyPass upgrades any path).
WEBSOCKET_PATHS = (
    r"^/api/v1/ws$",
    r"^/api/v1/terminal/sessions/[^/]+/ws$",
    r"^/api/v1/(sessions|shares)/[^/]+/vnc$",
)
OUTPUT_STREAM_PATH = r"^/api/v1/jobs/[^/]+/output/stream$"
#: Room on top of the largest edited file for the rest of a request.
BODY_MARGIN = 1024 * 1024
#: Seconds a proxied socket or stream may stay silent (terminals idle for long).
LONG_TIMEOUT = 3600


class FrontendError(ValueError):
    """A value the configuration cannot be rendered with."""


@dataclass(frozen=True)
class FrontendOptions:
    server_name: str
    cert: Path
    key: Path
    upstream: str = "127.0.0.1:8080"
    #: ``port`` or ``address:port`` the TLS server listens on.
    listen: str = "443"
    #: Where plain HTTP is redirected to HTTPS from; None: no redirecting server.
    redirect_from: str | None = "80"
    hsts: bool = True


def _listen(value: str, what: str) -> str:
    match = _HOST_PORT.fullmatch(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise FrontendError(f"{what} {value!r} is not a port or address:port")
    return value


def _checked(options: FrontendOptions) -> FrontendOptions:
    if not _SERVER_NAME.fullmatch(options.server_name):
        raise FrontendError(f"--server-name {options.server_name!r} is not a host name")
    for what, path in (("--cert", options.cert), ("--key", options.key)):
        if not path.is_absolute() or re.search(r"[\s;{}\"'\\]", str(path)):
            raise FrontendError(f"{what} {path} must be an absolute path without spaces or quotes")
    upstream = _HOST_PORT.fullmatch(options.upstream)
    if upstream is None or upstream["host"] is None:
        raise FrontendError(f"--upstream {options.upstream!r} is not host:port")
    _listen(options.listen, "--listen")
    if options.redirect_from is not None:
        _listen(options.redirect_from, "--redirect-from")
    return options


def body_limits(settings: Settings) -> dict[str, int]:
    """The largest request body, in bytes, per kind of request."""
    return {
        "default": settings.file_edit_max_bytes + BODY_MARGIN,
        "uploads": request_limit(settings),
        "tus": settings.tus_max_bytes + BODY_MARGIN,
    }


def render(kind: Kind, options: FrontendOptions, settings: Settings) -> str:
    """The configuration file for ``kind`` (a site file: nginx ``http`` context, or an
    Apache file of virtual hosts)."""
    if kind not in KINDS:
        raise FrontendError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    env = Environment(
        loader=PackageLoader("hpcportal.services.operations", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - a configuration file, not HTML; values are checked
    )
    template = env.get_template(f"frontend_{kind}.conf.j2")
    return template.render(
        o=_checked(options),
        limits=body_limits(settings),
        websocket_paths=WEBSOCKET_PATHS,
        output_stream_path=OUTPUT_STREAM_PATH,
        long_timeout=LONG_TIMEOUT,
    )
