"""The Slurm boundary holds: nothing above ``slurm/`` runs Slurm commands itself.

Services, routers and pages act on Slurm through ``hpcportal.slurm.actions`` (and read
through the adapter); none imports the executor or calls ``.executor.run(``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hpcportal"
ABOVE_THE_BOUNDARY = ("services", "api", "web")
EXECUTOR = "hpcportal.slurm.executor"


def modules() -> list[Path]:
    return sorted(p for part in ABOVE_THE_BOUNDARY for p in (SRC / part).rglob("*.py"))


def breaches(source: str) -> list[str]:
    """Imports of the executor module, and ``X.executor.run(...)`` calls, in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith(EXECUTOR)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module.startswith(EXECUTOR) or (module == "hpcportal.slurm" and "executor" in names):
                found.append(f"from {module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (
                node.func.attr == "run"
                and isinstance(owner, ast.Attribute)
                and owner.attr == "executor"
            ):
                found.append(f"line {node.lineno}: .executor.run(")
    return found


def test_the_rule_sees_what_it_forbids() -> None:
    """The check itself can fail."""
    bad = (
        "from hpcportal.slurm.executor import SlurmExecutor\n"
        "import hpcportal.slurm.executor\n"
        "from hpcportal.slurm import executor\n"
        "ctx.submit.executor.run('scancel', ['1'])\n"
    )
    assert len(breaches(bad)) == 4
    assert breaches("adapter.actions.cancel('1', as_user='alice')\nexecutor.runas\n") == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_above_the_boundary_runs_slurm(path: Path) -> None:
    assert breaches(path.read_text()) == [], path


# --- Pages act through services; nothing reaches into another module's privates -------

PACKAGE = "hpcportal"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _absolute(module: str | None, level: int, path: Path) -> str:
    """The absolute name of a (possibly relative) ``from ... import``'s module."""
    if level == 0:
        return module or ""
    parts = ["hpcportal", *path.relative_to(SRC).with_suffix("").parts]
    base = parts[: len(parts) - level]
    return ".".join(base + ([module] if module else []))


def layer_imports(source: str, path: Path, layer: str) -> list[str]:
    """The modules of ``hpcportal.<layer>`` (``api``, ``web``) that ``source``, the text
    of ``path``, imports: absolute or relative, at run time or for type checking."""
    package = f"{PACKAGE}.{layer}"
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, path)
            names = [
                f"{module}.{a.name}" if module in (PACKAGE, package) else module for a in node.names
            ]
        else:
            continue
        found += [
            f"line {node.lineno}: {n}" for n in names if n == package or n.startswith(f"{package}.")
        ]
    return found


def private_imports(source: str, path: Path) -> list[str]:
    """Private names ``source`` takes from other modules of the package: imported
    (``from hpcportal.x import _name``) or reached through an imported name
    (``x._name``)."""
    found = []
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, path)
            if module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"line {node.lineno}: from {module} import {alias.name}")
                imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    imported.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and _is_private(node.attr)
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_import_rules_see_what_they_forbid() -> None:
    """Both checks can fail."""
    where = SRC / "web" / "common.py"
    bad_api = (
        "from hpcportal.api import auth as auth_api\n"
        "import hpcportal.api.jobs\n"
        "from hpcportal.api.sessions import router\n"
        "from hpcportal.api.deps import SnapshotDep\n"
        "from hpcportal.api.params import DbId\n"
        "from hpcportal import api\n"
        "from ..api import deps\n"
        "from ..api.files import router\n"
    )
    assert len(layer_imports(bad_api, where, "api")) == 8
    fine_api = (
        "from hpcportal.dependencies import SnapshotDep\n"
        "from hpcportal.limits import DbId\n"
        "from hpcportal.apps import catalog\n"
        "from hpcportal import config\n"
        "from .common import Page\n"
    )
    assert layer_imports(fine_api, where, "api") == []
    router = SRC / "api" / "jobs.py"
    assert (
        len(layer_imports("from ..web.common import Page\nimport hpcportal.web\n", router, "web"))
        == 2
    )
    bad_private = (
        "from hpcportal.web.pages import _csv, safe_next\n"
        "from hpcportal.api import auth as auth_api\n"
        "auth_api._clear_session_cookies(response, settings)\n"
        "from .i18n import _catalog\n"
    )
    assert len(private_imports(bad_private, where)) == 3
    fine = "from hpcportal.web.common import page_error as _page_error\nself._x = __name__\n"
    assert private_imports(fine, where) == []


WEB_MODULES = sorted((SRC / "web").rglob("*.py"))
PACKAGE_MODULES = sorted(SRC.rglob("*.py"))


API_MODULES = sorted((SRC / "api").rglob("*.py"))
#: Who may import routers or pages: ``app.py``, the composition root, which mounts them.
#: ``composition.py`` names the node proxy's client pool type for type checking only.
MAY_IMPORT_LAYER = {
    (SRC / "app.py", "api"),
    (SRC / "app.py", "web"),
    (SRC / "composition.py", "api"),
}
#: ``api/`` (routers) and ``web/`` (pages) are siblings on top of the services: neither
#: imports the other, and nothing below them (services, ``dependencies.py`` with the
#: request dependencies both use, ``limits.py`` with the bounded parameter types, the
#: Slurm and run-as boundaries, the CLI) imports either. A page calls the service the
#: router calls.
LAYER_RULES = [
    *[(path, "api") for path in WEB_MODULES],
    *[(path, "web") for path in API_MODULES],
    *[
        (path, layer)
        for path in PACKAGE_MODULES
        if path.relative_to(SRC).parts[0] not in ("api", "web")
        for layer in ("api", "web")
        if (path, layer) not in MAY_IMPORT_LAYER
    ],
]


@pytest.mark.parametrize(
    ("path", "layer"),
    LAYER_RULES,
    ids=lambda v: v if isinstance(v, str) else str(v.relative_to(SRC)),
)
def test_routers_and_pages_are_siblings(path: Path, layer: str) -> None:
    assert layer_imports(path.read_text(), path, layer) == [], path


@pytest.mark.parametrize("path", PACKAGE_MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    assert private_imports(path.read_text(), path) == [], path


# --- The run-as helper's wire format stays inside runas/ ---------------------------------

#: What services, routers and pages may import of ``hpcportal.runas``: the package (the
#: ``AsUser`` typed client, ``RunAs``, ``HelperStream``), the client module and its
#: result dataclasses (``results``). Never the helper program, its file operations or
#: the boundary's internals.
RUNAS_PUBLIC = frozenset({"hpcportal.runas", "hpcportal.runas.client", "hpcportal.runas.results"})
RUNAS_INTERNALS = frozenset(
    {
        "helper", "helper_walk", "helper_read", "helper_space", "helper_write", "helper_trash",
        "helper_zip", "helper_search", "helper_upload", "helper_files", "assemble", "boundary",
        "answers", "stream", "users",
    }
)  # fmt: skip


def helper_wire(source: str, path: Path) -> list[str]:
    """Helper requests built by hand (a dict literal with an ``"op"`` key, or
    ``dict(op=...)``) and imports of runas modules other than the public ones."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "op" for k in node.keys
        ):
            found.append(f"line {node.lineno}: a dict with an 'op' key")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and any(k.arg == "op" for k in node.keywords)
        ):
            found.append(f"line {node.lineno}: dict(op=...)")
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, path)
            named = (
                [f"{module}.{a.name}" for a in node.names] if module == "hpcportal.runas" else []
            )
            wanted = [n for n in named if n.rsplit(".", 1)[1] in RUNAS_INTERNALS]
            if module.startswith("hpcportal.runas.") and module not in RUNAS_PUBLIC:
                wanted.append(module)
            found += [f"line {node.lineno}: imports {n}" for n in wanted]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: imports {a.name}"
                for a in node.names
                if a.name.startswith("hpcportal.runas.") and a.name not in RUNAS_PUBLIC
            ]
    return found


def test_the_helper_rule_sees_what_it_forbids() -> None:
    where = SRC / "services" / "files.py"
    bad = (
        'request = {"op": "stat", "path": "/x"}\n'
        'runas.call("alice", dict(op="mkdir", path="/x"))\n'
        "from hpcportal.runas.boundary import helper_error\n"
        "from hpcportal.runas import helper_files\n"
        "from hpcportal.runas import boundary\n"
        "import hpcportal.runas.helper\n"
        "from ..runas.helper import FILE_OPERATIONS\n"
    )
    assert len(helper_wire(bad, where)) == 7
    fine = (
        "from hpcportal.runas import AsUser, HelperStream, RunAs\n"
        "from hpcportal.runas.client import ReadHead\n"
        'body = {"operation": "x"}\n'
        'FileOp(op="mkdir")\n'
    )
    assert helper_wire(fine, where) == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_above_the_boundary_speaks_the_helpers_wire_format(path: Path) -> None:
    assert helper_wire(path.read_text(), path) == [], path


# --- The application's parts are read through one typed accessor ------------------------

#: The one module that touches ``app.state``: it stores and reads ``AppServices``.
STATE_OWNER = SRC / "composition.py"


def app_state_uses(source: str) -> list[str]:
    """``<anything>.app.state`` and ``app.state`` in ``source``: reading (or filling)
    the app's untyped state bag instead of ``composition.services_of``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "state":
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "app") or (
                isinstance(owner, ast.Attribute) and owner.attr == "app"
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_state_rule_sees_what_it_forbids() -> None:
    bad = (
        "hub = request.app.state.live\n"
        "x = getattr(websocket.app.state, 'terminals', None)\n"
        "app.state.settings = settings\n"
    )
    assert len(app_state_uses(bad)) == 3
    fine = "hub = services_of(request).live\nsession.state = 'running'\nj.state.current\n"
    assert app_state_uses(fine) == []


@pytest.mark.parametrize(
    "path",
    [p for p in PACKAGE_MODULES if p != STATE_OWNER],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_only_the_composition_module_touches_app_state(path: Path) -> None:
    assert app_state_uses(path.read_text()) == [], path


# --- Redis has one client: the ha package ----------------------------------------------

HA = SRC / "ha"


def redis_imports(source: str) -> list[str]:
    """``import redis`` / ``from redis… import …`` in ``source``, with their lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "redis" or name.startswith("redis.") for name in names):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_redis_rule_sees_what_it_forbids() -> None:
    bad = "import redis\nfrom redis.sentinel import Sentinel\nimport os, redis.asyncio\n"
    assert len(redis_imports(bad)) == 3
    assert redis_imports("from hpcportal.ha import redis_probe\nimport redisx\n") == []


@pytest.mark.parametrize(
    "path",
    [p for p in PACKAGE_MODULES if HA not in p.parents],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_only_the_ha_package_talks_to_redis(path: Path) -> None:
    assert redis_imports(path.read_text()) == [], path
