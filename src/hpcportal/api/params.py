"""What a request may carry: bounded numbers, clean strings, known query parameters.

The bounded types (``PageNumber``, ``Offset``, ``DbId``, ``Line``...) live in
``hpcportal.limits`` so request models in ``services`` use them too; they are
re-exported here for the routers. :func:`check_request`, installed once for the
whole app, applies the rules no single parameter can:

- an unknown query parameter is a 422 (a misspelt filter would otherwise silently
  return everything), on every route under ``/api/``;
- no query value, query name, path or path parameter may hold a control character,
  on the pages too (they call the same services);
- no string anywhere in a JSON or form body may hold a NUL or half of a UTF-16
  surrogate pair (``"\\ud800"`` in JSON); multi-line text such as a script keeps its
  newlines and tabs, single-line fields use :data:`Line`.

The node proxy (``/node/...``) passes the app's own path and query string on
unchanged, so it is outside these rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Request, params
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from hpcportal.errors import InvalidInput
from hpcportal.limits import (
    CONTROL,
    DB_ID_MAX,
    INT64_MAX,
    NEVER_TEXT,
    PAGE_MAX,
    PAGE_SIZE_MAX,
    SLURM_ID_MAX,
    ByteCount,
    DbId,
    Int64,
    Line,
    Moment,
    Offset,
    PageNumber,
    PageSize,
    Text,
    describe,
)

__all__ = [
    "DB_ID_MAX",
    "INT64_MAX",
    "PAGE_MAX",
    "PAGE_SIZE_MAX",
    "SLURM_ID_MAX",
    "ByteCount",
    "DbId",
    "Int64",
    "Line",
    "Moment",
    "Offset",
    "PageNumber",
    "PageSize",
    "RefuseControlInPath",
    "Text",
    "check_request",
]

#: The web-app proxy hands the session's app its own path and query, whatever they are.
PASSED_THROUGH = ("/node/",)


# --- the request-wide rules ------------------------------------------------------------


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included (kept on the
    route, computed at its first request)."""
    known: frozenset[str] | None = getattr(route, "_hpcportal_query_names", None)
    if known is None:
        names: set[str] = set()
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            names.update(field.alias for field in dependant.query_params)
            pending.extend(dependant.dependencies)
        known = frozenset(names)
        setattr(route, "_hpcportal_query_names", known)  # noqa: B010 (not a declared attribute)
    return known


def _strings(document: Any) -> Iterator[str]:
    """Every string in a decoded JSON document, keys and values, at any depth (without
    recursion: a document nested a thousand deep must not exhaust the stack)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield str(key)
                pending.append(item)
        elif isinstance(value, list):
            pending.extend(value)


def _check_line(where: str, value: str) -> None:
    found = CONTROL.search(value)
    if found:
        raise InvalidInput(f"{where} contains {describe(found.group())}.")


class RefuseControlInPath:
    """ASGI middleware: a 422 for a path with a control character (but ``/node/``).

    The dependency below sees path parameters only once a route matched, and
    Starlette's ``{path:path}`` does not match a newline, so ``/files/home/a%0Ab``
    would be a bare 404; this answers it with the reason instead, before routing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        found = None if path.startswith(PASSED_THROUGH) else CONTROL.search(path)
        if found is None:
            await self.app(scope, receive, send)
            return
        detail = f"The path contains {describe(found.group())}."
        response = JSONResponse({"detail": detail, "code": InvalidInput.code}, 422)
        await response(scope, receive, send)


async def check_request(connection: HTTPConnection) -> None:
    """The app-wide dependency that applies the rules above to every request.

    Unknown query parameters are refused under ``/api/`` only (a page may be linked
    with anything after its ``?``); the character rules hold for the pages too, which
    call the same services, but not for the node proxy. It runs before
    authentication, so a misspelt parameter is a 422 even without a login. Bodies are
    looked at only when the route declares one (FastAPI has then read and decoded it
    already; a streamed upload is never read here).
    """
    path: str = connection.scope.get("path", "")  # not .url: building it costs more
    if connection.scope["type"] != "http" or path.startswith(PASSED_THROUGH):
        return
    route = connection.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route) if path.startswith("/api/") else None
    for name, value in connection.query_params.multi_items():
        _check_line("A query parameter name", name)
        if known is not None and name not in known:
            hint = f" Known: {', '.join(sorted(known))}." if known else ""
            raise InvalidInput(f"Unknown query parameter {name!r}.{hint}")
        _check_line(f"Query parameter {name!r}", value)
    for name, value in connection.path_params.items():
        if isinstance(value, str):
            _check_line(f"The path ({name})", value)
    if route.body_field is not None and isinstance(connection, Request):
        await _check_body(connection, is_form=isinstance(route.body_field.field_info, params.Form))


async def _check_body(request: Request, *, is_form: bool) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    strings: Iterator[str]
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            strings = _strings(await request.json())
        except ValueError:
            return  # not JSON: FastAPI answers that itself
    elif is_form:
        form = await request.form()  # FastAPI parsed it already; this is its cached copy
        strings = (s for item in form.multi_items() for s in item if isinstance(s, str))
    else:
        return
    for value in strings:
        found = NEVER_TEXT.search(value)
        if found:
            raise InvalidInput(f"The request body contains {describe(found.group())}.")
