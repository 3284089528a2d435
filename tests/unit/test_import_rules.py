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
