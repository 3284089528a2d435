"""Report kinds: each turns a ``ReportSpec`` into a ``ReportDocument`` for a viewer.

``build_report`` is the one entry point (generation, previews, the CLI). A kind is a
module of this package named as the kind (``job_usage``, ``efficiency``, ``system``,
``user_activity``, ``custom``) with ``build(spec, viewer, session, context)``; it is
imported when first asked for, so adding a kind is adding its module (and nothing in
this file), and a kind whose module is missing is a clear 422, not an ImportError.
``register`` puts a builder in by hand (tests, or a kind under another module name).

Kinds that show job usage ask the usage store (``services/reports/usage.py``), never
slurmdbd; their text is in the spec's language (``kinds/text.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from hpcportal.config import Settings
from hpcportal.errors import InvalidInput
from hpcportal.services.reports.document import ReportDocument, ReportKind
from hpcportal.services.reports.spec import ReportSpec, Viewer


@dataclass(frozen=True)
class BuildContext:
    """What a kind may use besides the database session: the settings, the Slurm
    adapter (for the release, never for usage figures), the time the report is built,
    a progress callback (0-100) and any other part a kind needs (``parts``, e.g. the
    monitoring service), passed by name to ``build_report``."""

    settings: Settings | None = None
    adapter: Any = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    progress: Callable[[int], None] = lambda _: None
    parts: dict[str, Any] = field(default_factory=dict)


class Builder(Protocol):
    def __call__(
        self, spec: ReportSpec, viewer: Viewer, session: Session, context: BuildContext
    ) -> ReportDocument: ...


_REGISTERED: dict[str, Builder] = {}


def register(kind: ReportKind, builder: Builder) -> None:
    """Use ``builder`` for ``kind`` (instead of the module named as the kind)."""
    _REGISTERED[kind] = builder


def builder_of(kind: ReportKind) -> Builder:
    """The builder of ``kind``: registered, else ``kinds.<kind>.build``."""
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    try:
        module = importlib.import_module(f"{__name__}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{kind}":
            raise
        raise InvalidInput(f"Reports of kind {kind!r} are not available yet.") from None
    built: Builder = module.build
    return built


def build_report(
    spec: ReportSpec,
    viewer: Viewer,
    session: Session,
    *,
    settings: Settings | None = None,
    adapter: Any = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    **parts: Any,
) -> ReportDocument:
    """Build the report ``spec`` asks for, holding only what ``viewer`` may see (403
    otherwise), in ``spec.language`` (blocking: reads the database)."""
    context = BuildContext(
        settings=settings,
        adapter=adapter,
        now=now or datetime.now(UTC),
        progress=progress or (lambda _: None),
        parts=parts,
    )
    return builder_of(spec.kind)(spec, viewer, session, context)
