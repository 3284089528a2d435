"""The command line's client of the portal's HTTP API: where the portal is, the
``--url`` and ``--token`` options, and one way to fail.

Every request carries the personal API token as ``Authorization: Bearer``. Errors
from the API (``{"detail": ..., "code": ...}``) become ``CliError`` with the detail,
a dropped connection a message saying what to check; ``reporting`` prints either as
``Error: ...`` on stderr and exits 1 (usage errors 2), never with a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds to wait for one answer (a submission runs sbatch on the portal's side).
TIMEOUT = 60.0
#: Seconds between two polls of ``output --follow``.
#: Seconds before the one retry of a request whose connection broke.
RETRY_DELAY = 0.5
#: Jobs per request when listing (the API's maximum).

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="HPCPORTAL_URL", help="The portal's address.", rich_help_panel="Portal"
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="HPCPORTAL_TOKEN",
        help="A personal API token (hpcp_...), made in the portal. Prefer the "
        "environment variable: other users can see command lines.",
        show_default=False,
        rich_help_panel="Portal",
    ),
]


# --- Talking to the portal -----------------------------------------------------------


class CliError(Exception):
    """Something to tell the user, the exit status to leave with, and for an answer of
    the API its HTTP status."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status


def usage_error(message: str) -> NoReturn:
    raise CliError(message, exit_code=2)


@contextmanager
def reporting() -> Iterator[None]:
    """Turn every expected failure into ``Error: ...`` on stderr and an exit status."""
    try:
        yield
    except CliError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("", err=True)
        raise typer.Exit(130) from None


def api_error_message(response: httpx.Response, url: str) -> str:
    """The API's ``detail``, or a short description of a non-API answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):  # FastAPI's default validation shape
        parts = [
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        ]
        return "; ".join(parts)
    text = " ".join(response.text.split())[:200]
    reason = response.reason_phrase or "error"
    return f"HTTP {response.status_code} {reason} from the portal at {url}" + (
        f": {text}" if text else "."
    )


def describe_transport_error(exc: httpx.TransportError, url: str, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection refused"
        return (
            f"Cannot connect to the portal at {url} ({reason}). Is it running? "
            "Set --url or HPCPORTAL_URL to its address."
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"The portal at {url} did not answer within {timeout:g} s."
    return f"The connection to the portal at {url} failed: {exc or type(exc).__name__}."


class PortalClient:
    """A thin client of the portal's API; every failure becomes a ``CliError``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            usage_error(f"--url must start with http:// or https://, not {url!r}.")
        if not token:
            usage_error("No API token: pass --token or set HPCPORTAL_TOKEN.")
        self.url = url
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retries: int = 0,
    ) -> httpx.Response:
        """Send one request; on a dropped or refused connection try ``retries`` more times
        (the caller decides when that is safe), then fail with a clear message."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, params=params, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                if attempt < retries:
                    attempt += 1
                    if not isinstance(exc, httpx.ConnectError):  # a refusal needs no story
                        typer.echo(
                            f"The connection to {self.url} broke "
                            f"({exc or type(exc).__name__}); trying once more.",
                            err=True,
                        )
                    time.sleep(RETRY_DELAY)
                    continue
                raise CliError(describe_transport_error(exc, self.url, self.timeout)) from None
            except httpx.HTTPError as exc:
                raise CliError(f"Request to {self.url} failed: {exc}") from None
            if response.status_code >= 400:
                raise CliError(api_error_message(response, self.url), status=response.status_code)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"The portal at {self.url} answered HTTP {response.status_code} with "
                "something that is not JSON; is --url the portal's address?"
            ) from None

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        # Reading is safe to repeat, so one dropped connection is retried.
        return self.json("GET", path, params=params, retries=1)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CliError(f"Unexpected answer from the portal for {what}.")
    return value
