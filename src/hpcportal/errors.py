"""Typed errors and the one place they become HTTP answers.

Services and the Slurm boundary raise these; routers never build error responses
themselves. Anything else that escapes is logged and answered with a plain 500
message, never a stack trace.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class PortalError(Exception):
    """Base of every error a person may see; ``status`` is the HTTP code it maps to."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidInput(PortalError):
    status, code = 422, "invalid_input"


class BadRequest(PortalError):
    """A request a protocol says to answer with 400 (tus: bad metadata, unknown checksum)."""

    status, code = 400, "bad_request"


class NotFound(PortalError):
    status, code = 404, "not_found"


class NotAuthenticated(PortalError):
    status, code = 401, "not_authenticated"

    def __init__(self, message: str = "Log in first.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(PortalError):
    status, code = 403, "forbidden"


class Conflict(PortalError):
    status, code = 409, "conflict"


class BadGateway(PortalError):
    """A session's server (behind the portal's proxy) could not be reached."""

    status, code = 502, "bad_gateway"


class PayloadTooLarge(PortalError):
    status, code = 413, "payload_too_large"


class InsufficientStorage(PortalError):
    status, code = 507, "insufficient_storage"


class IsDirectory(Conflict):
    """A file operation met a folder (a download of a folder becomes a zip)."""

    code = "is_directory"


class PreconditionFailed(PortalError):
    """An ``If-Match`` that no longer holds: someone changed the file meanwhile."""

    status, code = 412, "precondition_failed"


class PreconditionRequired(PortalError):
    """Replacing an existing file needs ``If-Match`` with the ETag that was read."""

    status, code = 428, "precondition_required"


class RangeNotSatisfiable(PortalError):
    status, code = 416, "range_not_satisfiable"


class UnsupportedMediaType(PortalError):
    status, code = 415, "unsupported_media_type"


class ChecksumMismatch(PortalError):
    """tus checksum extension: the chunk's ``Upload-Checksum`` did not match (460)."""

    status, code = 460, "checksum_mismatch"


class RunAsUnavailable(PortalError):
    """The privileged boundary is not set up (no sudoers rule, no helper)."""

    status, code = 503, "runas_unavailable"


class Misconfigured(PortalError):
    """A file the portal needs is missing, unusable or unsafe (its key file open to
    others): the operator must act, so the message says what to do."""

    status, code = 503, "misconfigured"


class RateLimited(PortalError):
    status, code = 429, "rate_limited"


class PrometheusError(PortalError):
    """Something went wrong asking Prometheus (``hpcportal.prometheus``); subclasses
    say what."""

    status, code = 502, "prometheus_error"


class PrometheusUnavailable(PrometheusError):
    """Prometheus is not configured, cannot be reached, or did not answer in time."""

    status, code = 503, "prometheus_unavailable"


class PrometheusBadQuery(PrometheusError):
    """Prometheus refused the query (a PromQL error, too many points): its message."""

    status, code = 422, "prometheus_bad_query"


class PrometheusUnreadable(PrometheusError):
    """Prometheus answered something that is not its API's format."""

    status, code = 502, "prometheus_unreadable"


class SlurmError(PortalError):
    """Something went wrong talking to Slurm; subclasses say what."""

    status, code = 502, "slurm_error"


class SlurmTimeout(SlurmError):
    status, code = 503, "slurm_timeout"


class SlurmUnreachable(SlurmError):
    status, code = 503, "slurm_unreachable"


class SlurmRateLimited(SlurmError):
    """slurmctld refused the call under its own rate limit (``rl_enable``,
    ESLURM_RATELIMITED): the cluster is busy, so it is a 503 that says when to retry."""

    status, code = 503, "slurm_rate_limited"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class SubmissionUncertain(SlurmError):
    """Slurm may or may not have created the job (sbatch timed out, the connection
    dropped), or cannot yet say whether an earlier attempt did. Retrying with the same
    ``Idempotency-Key`` is safe: the portal asks Slurm before submitting again."""

    status, code = 503, "submission_uncertain"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "10"})


class SlurmPermissionDenied(SlurmError):
    status, code = 403, "slurm_permission_denied"


class SlurmNotFound(SlurmError):
    status, code = 404, "not_found"


class SlurmInvalidRequest(SlurmError):
    status, code = 400, "slurm_invalid_request"


class SlurmUnsupported(SlurmError):
    """The cluster runs a Slurm release, or offers only JSON formats, that the portal
    does not read: the operator must act (upgrade the portal or Slurm)."""

    status, code = 503, "slurm_unsupported"


class SlurmOutputUnreadable(SlurmError):
    """Slurm answered, but in a shape the portal does not know (a field renamed or
    changed type): refused loudly instead of read as zeros."""

    status, code = 502, "slurm_output_unreadable"


def _body(code: str, message: str) -> dict[str, object]:
    return {"detail": message, "code": code}


def install_error_handlers(app: FastAPI) -> None:
    """Map every error type to its HTTP answer, in one place."""

    @app.exception_handler(PortalError)
    async def portal_error(_: Request, exc: PortalError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
        message = "; ".join(parts) or "Invalid request."
        return JSONResponse(_body("invalid_input", message), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _body("http_error", str(exc.detail)), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            _body("internal_error", "Internal error; the administrators can find it in the log."),
            500,
        )
