"""One way for an integration module to get a portal: ``PortalFactory``.

``conftest.py`` hands one factory to each module (``make_portal``) and a default
``portal`` built with it. A module that needs other settings asks the factory
(``make_portal(refresh_interval=0.5)``) instead of re-declaring temp folders, the dev
cluster's ``slurm.conf`` and the start/stop of uvicorn. What the factory starts runs
until the module's tests are done (``make_portal(...)``) or until a ``with`` block ends
(``make_portal.run(...)``, for a portal per test or per parameter).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from hpcportal.config import Settings
from tests.integration.portal_server import RunningPortal, portal_settings, run_portal
from tests.integration.service_portal import ServicePortal, service_portal


class PortalFactory:
    """Settings and running portals on the dev cluster, for one module.

    ``slurm_conf`` is the shared dev cluster's; a module on a cluster of its own
    passes ``slurm_conf=`` with its overrides.
    """

    def __init__(self, slurm_conf: str, fresh_dir: Callable[[], Path], stack: ExitStack) -> None:
        self.slurm_conf = slurm_conf
        self._fresh_dir = fresh_dir
        self._stack = stack

    def dir(self) -> Path:
        """A new private temp folder (pytest's), for a portal's database and files."""
        return self._fresh_dir()

    def settings(self, tmp: Path | None = None, **overrides: object) -> Settings:
        """The suite's portal settings (``portal_settings``: SQLite in ``tmp``, 1 s
        refreshes, no rate limits, ...) with ``overrides``."""
        slurm_conf = overrides.pop("slurm_conf", None) or self.slurm_conf
        return portal_settings(tmp or self.dir(), str(slurm_conf), **overrides)

    @contextmanager
    def run(
        self,
        settings: Settings | None = None,
        *,
        tmp: Path | None = None,
        log_level: str = "warning",
        **overrides: object,
    ) -> Iterator[RunningPortal]:
        """A portal (uvicorn on loopback) for the ``with`` block: ``settings`` as
        given, or the suite's with ``overrides``."""
        if settings is None:
            settings = self.settings(tmp, **overrides)
        elif overrides or tmp is not None:
            raise TypeError("pass settings or overrides, not both")
        with run_portal(settings, log_level=log_level) as running:
            yield running

    def __call__(
        self,
        settings: Settings | None = None,
        *,
        tmp: Path | None = None,
        log_level: str = "warning",
        **overrides: object,
    ) -> RunningPortal:
        """Like ``run``, but the portal runs until the factory's scope (the module)
        ends."""
        return self._stack.enter_context(
            self.run(settings, tmp=tmp, log_level=log_level, **overrides)
        )

    def service(self, extra_env: dict[str, str] | None = None) -> ServicePortal:
        """``hpcportal serve`` as the service account, as in production
        (``service_portal.py``), in a fresh folder under /tmp that the account can
        enter; stopped, and the folder removed, when the module ends."""
        workdir = Path(tempfile.mkdtemp(prefix="hpcportal-service-", dir="/tmp"))
        workdir.chmod(0o755)
        self._stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        return self._stack.enter_context(service_portal(self.slurm_conf, workdir, extra_env))
