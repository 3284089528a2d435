"""What the OpenAPI document says: one error schema, every route's errors, stable ids.

Generated clients are only as good as the spec. Three things FastAPI gets wrong for
this portal are put right here, in one place, instead of on each of 70-odd routes:

- **Errors.** Every 4xx and 5xx the portal sends is ``{"detail", "code"}``
  (``errors.install_error_handlers``; request-validation errors too, with the fields
  named in ``detail``), never FastAPI's ``HTTPValidationError``. :func:`document_errors`
  adds that one schema, :class:`ErrorResponse`, to each route for the statuses the
  route can really answer, derived from what it depends on: a login (401, and 403 for
  an API token without the scope or a cookie without the CSRF header), the admin role
  or a login session (403), a path parameter (404), the Slurm adapter or the snapshot
  (Slurm's refusals and 502/503), the run-as boundary (the helper's errors, 503/504),
  submissions (409 idempotency, 429 rate limits); plus a few named sets for what a
  router's service raises in its body (files, uploads). 422 (``check_request``: unknown
  query parameters, control characters) and 500 hold everywhere.
- **Operation ids.** :func:`operation_id` gives ``jobs_submit``, ``files_read_path``
  instead of ``submit_api_v1_jobs_post``: the router's area, then the endpoint's name
  without the area repeated.
- **What the API covers**: :data:`DESCRIPTION` and :data:`TAGS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute

from hpcportal import dependencies as deps
from hpcportal.api import sessions

DESCRIPTION = """\
The HTTP API of hpcportal, a web portal for Slurm clusters. It covers what the web UI
does, for scripts and generated clients:

- **reading the cluster** from one shared, cached snapshot (nodes, partitions, jobs)
  and Slurm's accounting (`sacct`, `sacctmgr`, `sshare`), each person seeing what
  Slurm would show them;
- **acting as yourself**: submitting jobs (with dry runs and `Idempotency-Key`),
  controlling them, reading their output, files (browse, download, upload, edit,
  move, trash), templates, interactive apps and terminals, all run as your Unix user
  through the run-as boundary;
- notifications, disk alerts, dashboards, personal API tokens and (for admins) the
  audit log.

Authenticate with `POST /api/v1/auth/token` (a bearer JWT and the browser's session
cookie) or a personal API token (`Authorization: Bearer hpcp_...`). Unsafe requests
authenticated by the cookie need the `X-CSRF-Token` header.

Every error is `{"detail": "...", "code": "..."}` (the `ErrorResponse` schema): `detail`
is for people, `code` for programs. A 429 and some 503s carry `Retry-After`. Live
updates and terminals use WebSockets (`/api/v1/ws`,
`/api/v1/terminal/sessions/{id}/ws`), which OpenAPI does not describe.
"""

TAGS: list[dict[str, Any]] = [
    {"name": "auth", "description": "Logging in and out; personal API tokens."},
    {"name": "cluster", "description": "Nodes, partitions, QOS, accounts, fair share, you."},
    {
        "name": "jobs",
        "description": "Jobs from the snapshot and accounting; submitting (dry runs, "
        "idempotency), control, output and efficiency, as you.",
    },
    {"name": "templates", "description": "Job templates: personal and site, rendered, submitted."},
    {"name": "files", "description": "Your file areas, read and changed as your Unix user."},
    {"name": "uploads", "description": "Uploads: multipart for job inputs, tus for large files."},
    {"name": "interactive apps", "description": "Apps (Jupyter, desktops) and their sessions."},
    {"name": "terminal", "description": "Shells on the login node; the stream is a WebSocket."},
    {"name": "apptainer", "description": "The catalog of Apptainer images jobs may run in."},
    {"name": "notifications", "description": "Job and disk notifications, and your settings."},
    {"name": "alerts", "description": "Disk usage alerts and their thresholds."},
    {"name": "dashboard", "description": "Your dashboard layout and the site's presets."},
    {"name": "audit", "description": "Who did what, when and from where (admins)."},
    {
        "name": "admin",
        "description": "The admin console: plan a change (the exact Slurm commands and "
        "what they affect), apply it as yourself with a reason, revert it (admins).",
    },
    {
        "name": "monitoring",
        "description": "Named panels from Prometheus: the metric catalog, a node's and "
        "a job's figures with labels filled in by the server.",
    },
    {
        "name": "prometheus",
        "description": "Prometheus' HTTP API behind the portal: PromQL for admins (or "
        "everyone, when allowed), targets, rules, alerts, configuration, health.",
    },
    {
        "name": "reports",
        "description": "Usage reports: generated in the background (202, then poll), "
        "downloaded as PDF, XLSX, CSV or JSON, previewed, and scheduled daily, weekly or "
        "monthly in a time zone. Others' reports are 404 (admins see all).",
    },
    {"name": "health", "description": "Liveness and readiness, for load balancers."},
]


class ErrorResponse(BaseModel):
    """Every error answer of the portal, whatever its status."""

    detail: str = Field(
        description="What went wrong and, when the person can act, what to do. For "
        "invalid input it names each parameter or field and the rule it broke.",
        examples=["Unknown query parameter 'stat'. Known: limit, page, state."],
    )
    code: str = Field(
        description="A stable, machine-readable reason: invalid_input, not_found, "
        "not_authenticated, forbidden, conflict, rate_limited, slurm_unreachable, ...",
        examples=["invalid_input"],
    )


# --- the named sets ------------------------------------------------------------------

#: Every route: ``check_request`` (unknown query parameters, control characters) and
#: FastAPI's validation answer 422; an unexpected error is a logged 500.
EVERYWHERE = frozenset({422, 500})
#: A login session or API token: 401 without one; 403 for an API token lacking the
#: scope, or a cookie-authenticated unsafe request without the CSRF header.
AUTHENTICATED = frozenset({401, 403})
#: The admin role, or a login session rather than an API token.
RESTRICTED = frozenset({403})
#: A path parameter that names something: it may not exist, or not be yours.
NAMED = frozenset({404})
#: A Slurm command: its refusal (400 invalid, 403 permission, 404 unknown job),
#: an answer the portal cannot read (502), slurmctld down, slow or limiting (503).
SLURM = frozenset({400, 403, 404, 502, 503})
#: The shared snapshot: 503 until the first one is read.
SNAPSHOT = frozenset({503})
#: The run-as helper: the system's refusal (403), a missing file (404), a clash (409),
#: no sudoers rule (503), no answer in time (504).
RUNAS = frozenset({403, 404, 409, 503, 504})
#: Starting work on the cluster: an ``Idempotency-Key`` reused for another request (409),
#: the per-user rate limit (429), Slurm's outcome uncertain (503).
SUBMITTING = frozenset({409, 429}) | SLURM | RUNAS
#: File operations beyond ``RUNAS``: conditional writes (412/428), size (413), ranges
#: (416), no room (507).
FILES = frozenset({400, 412, 413, 415, 416, 428, 507})
#: Uploads: tus protocol errors (400), size (413), media type (415), checksum (460),
#: no room (507).
UPLOADS = frozenset({400, 409, 412, 413, 415, 460, 507})

#: Prometheus behind the portal: raw PromQL refused (403), an unknown panel, node or
#: job (404), an answer the portal cannot read (502), Prometheus off, down or slow (503).
PROMETHEUS = frozenset({403, 404, 502, 503})

#: What each dependency adds; a route gets the union over its whole dependency tree.
BY_DEPENDENCY: dict[Callable[..., Any], frozenset[int]] = {
    deps.get_authentication: AUTHENTICATED,
    deps.get_token_claims: RESTRICTED,
    deps.get_admin_principal: RESTRICTED,
    deps.get_adapter: SLURM,
    deps.get_snapshot: SNAPSHOT,
    deps.get_runas: RUNAS,
    deps.get_submit_context: SUBMITTING,
    deps.get_session_context: SLURM | RUNAS,
    sessions.get_actions: SUBMITTING,
    deps.get_monitoring: PROMETHEUS,
}
#: What a router's services raise in the endpoint's body, by the route's first tag.
BY_TAG: dict[str, frozenset[int]] = {
    "files": FILES,
    "uploads": UPLOADS,
    "admin": NAMED | frozenset({409}),
}

#: A request body the server cannot even decode (bytes that are not UTF-8): 400.
BODY = frozenset({400})
#: What one endpoint raises itself, by operation id (a unit test checks each exists).
BY_OPERATION: dict[str, frozenset[int]] = {
    # Wrong password (401), a user the portal does not serve (403), too many failures.
    "auth_log_in": frozenset({401, 403, 429}),
    # Outside systems with a file-held bearer secret (no login): 401 without it.
    "alert_receiver_receive_alerts": frozenset({401}),
    "slurm_mail_receive": frozenset({401}),
}

DESCRIPTIONS = {
    400: "Bad request (a protocol rule, or Slurm refused the request as invalid)",
    401: "Not authenticated (WWW-Authenticate: Bearer)",
    403: "Forbidden (role, scope, CSRF, or the system refused as you)",
    404: "Not found, or not yours to see",
    409: "Conflict with the current state",
    412: "Precondition failed (If-Match no longer holds)",
    413: "Payload too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Invalid input: the message names the parameter or field",
    428: "Precondition required (If-Match)",
    429: "Too many requests (Retry-After)",
    460: "Checksum mismatch (tus)",
    500: "Internal error (logged)",
    502: "Slurm or a session's server gave an answer the portal cannot use",
    503: "Slurm, the run-as helper or the portal's setup is unavailable (may carry Retry-After)",
    504: "The run-as helper did not answer in time",
    507: "Not enough space or quota where it goes",
}
CHALLENGE = {
    "WWW-Authenticate": {
        "description": "Bearer: log in (POST /api/v1/auth/token) or send an API token",
        "schema": {"type": "string"},
        "required": False,
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer"},
        "required": False,
    }
}


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    pending = [dependant]
    while pending:
        current = pending.pop()
        if current.call is not None:
            yield current.call
        pending.extend(current.dependencies)


def error_statuses(
    dependant: Dependant,
    tags: Iterable[object] = (),
    *,
    operation: str = "",
    body: bool = False,
) -> frozenset[int]:
    """The error statuses a route can answer: from its dependencies, its path and
    body, its tag, and what its endpoint raises itself."""
    found = set(EVERYWHERE) | BY_OPERATION.get(operation, frozenset())
    for call in _calls(dependant):
        found |= BY_DEPENDENCY.get(call, frozenset())
    if dependant.path_params:
        found |= NAMED
    if body:
        found |= BODY
    for tag in list(tags)[:1]:
        found |= BY_TAG.get(str(tag), frozenset())
    return frozenset(found)


def _error_response(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if status in (429, 503):
        answer["headers"] = RETRY_AFTER
    elif status == 401:
        answer["headers"] = CHALLENGE
    return answer


ERROR_REF = "#/components/schemas/ErrorResponse"
FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def _is_fastapis_422(answer: dict[str, Any]) -> bool:
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


#: Answers that are not (only) JSON, by operation id and status: downloads, streams,
#: icons. A status listed here keeps FastAPI's JSON entry (a folder listing) and gains
#: these; a unit test checks every id still exists.
MEDIA: dict[str, dict[str, tuple[str, ...]]] = {
    "files_read_path": {
        # A listing or description (JSON), search hits (JSON lines), a download or an
        # inline preview (the file's bytes: octet-stream, PDF or an image), a zip.
        "200": (
            "application/x-ndjson",
            "application/octet-stream",
            "application/zip",
            "application/pdf",
            "image/*",
        ),
        "206": ("application/octet-stream", "application/pdf", "image/*"),
    },
    "apps_icon": {"200": ("image/*",)},
}
BYTES: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
#: Bodies the endpoint streams itself (``request.stream()``, so FastAPI cannot see
#: them), by operation id.
REQUEST_BODIES: dict[str, dict[str, Any]] = {
    "files_write": {  # small UTF-8 text, saved as it is
        "required": False,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    "uploads_upload": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            }
        },
    },
    "uploads_create": {  # tus creation-with-upload: the first chunk, optional
        "required": False,
        "content": {"application/offset+octet-stream": BYTES},
    },
    "uploads_append_chunk": {
        "required": True,
        "content": {"application/offset+octet-stream": BYTES},
    },
}


def _fill_success(operation: dict[str, Any]) -> None:
    """The streamed request bodies and byte answers above; and a 2xx that a route
    documents with a description only (a dry run's 200, a pending launch's 202, a
    created file's 201) has the body of the route's main answer."""
    body = REQUEST_BODIES.get(operation.get("operationId", ""))
    if body is not None:
        operation.setdefault("requestBody", body)
    responses: dict[str, Any] = operation.get("responses", {})
    for status, media in MEDIA.get(operation.get("operationId", ""), {}).items():
        content = responses.setdefault(status, {"description": "OK"}).setdefault("content", {})
        for name in media:
            content.setdefault(name, BYTES if name != "application/x-ndjson" else {})
    main = next(
        (
            answer
            for status, answer in responses.items()
            if status.startswith("2") and "content" in answer
        ),
        None,
    )
    for status, answer in responses.items():
        if (
            main is not None
            and status.startswith("2")
            and status != "204"
            and "content" not in answer
        ):
            answer["content"] = dict(main["content"])


def document_errors(spec: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """Give every operation in ``spec`` its error answers, as ``ErrorResponse``.

    FastAPI's 422 (``HTTPValidationError``, a shape the portal never sends) is replaced;
    a status a route documents with its own body (``/ready``'s 503) is left as it is;
    one documented with a description only gets the schema.
    """
    paths: dict[str, dict[str, Any]] = spec.get("paths", {})
    for context in iter_route_contexts(routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        for method in context.methods or ():
            operation = paths.get(context.path_format or "", {}).get(method.lower())
            if operation is None:
                continue
            _fill_success(operation)
            responses: dict[str, Any] = operation.setdefault("responses", {})
            statuses = error_statuses(
                context.dependant,
                context.tags,
                operation=operation.get("operationId", ""),
                body=context.body_field is not None,
            )
            for status in sorted(statuses):
                own = responses.get(str(status))
                if own is None or _is_fastapis_422(own):
                    responses[str(status)] = _error_response(status)
                elif "content" not in own:
                    responses[str(status)] = {**_error_response(status), **own}
    schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for name in FASTAPI_422:
        schemas.pop(name, None)
    return spec


def install(app: FastAPI) -> None:
    """Build the app's OpenAPI document once, with :func:`document_errors` applied."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


AREAS = {"job_actions": "jobs", "tus": "uploads", "tokens": "api_tokens"}


def operation_id(route: APIRoute) -> str:
    """``<area>_<name>``: the router module (``jobs``, ``files``...) and the endpoint's
    function name without the area's words (``list_jobs`` in ``jobs``: ``jobs_list``).

    Stable as long as the function keeps its name, and readable in generated
    clients; unique (a unit test checks the whole document).
    """
    module = route.endpoint.__module__.rsplit(".", 1)[-1]
    area = AREAS.get(module, module)
    said = set(area.split("_"))
    said |= {word.removesuffix("s") for word in said}
    rest = [word for word in route.name.split("_") if word and word not in said]
    if not rest:
        return route.name if route.name == area else f"{area}_{route.name}"
    return f"{area}_{'_'.join(rest)}"
