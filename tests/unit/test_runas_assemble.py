"""The helper's modules paste into one program without changing what any name means.

``assemble.helper_source`` pastes the helper_*.py modules, in order, into one global
namespace: a name defined in two of them would silently take the later definition,
and a module using a name defined only further down would fail at run time as the
user. These checks make both mistakes fail here instead.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from hpcportal.runas import assemble
from hpcportal.runas.helper import OPERATIONS
from hpcportal.runas.helper_files import FILE_OPERATIONS

RUNAS = Path(assemble.__file__).resolve().parent


def top_level_names(source: str) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def helper_imports(source: str) -> list[tuple[str, str]]:
    """(module, name) of each ``from hpcportal.runas.helper_x import name``."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "hpcportal.runas.helper_"
        ):
            found += [(node.module.rsplit(".", 1)[1], a.name) for a in node.names if node.module]
    return found


def test_no_two_helper_modules_define_the_same_name() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for module in ("helper", *assemble.HELPER_MODULES):
        for name in top_level_names((RUNAS / f"{module}.py").read_text()):
            if name in seen:
                clashes.append(f"{name}: {seen[name]} and {module}")
            seen.setdefault(name, module)
    assert clashes == []


def test_the_check_for_clashes_sees_one() -> None:
    assert top_level_names("A = 1\ndef f(): pass\nclass C: pass\nx: int = 2\n") == {
        "A",
        "f",
        "C",
        "x",
    }


@pytest.mark.parametrize("index", range(len(assemble.HELPER_MODULES)))
def test_a_module_uses_only_names_pasted_before_it(index: int) -> None:
    module = assemble.HELPER_MODULES[index]
    earlier = set(assemble.HELPER_MODULES[:index])
    for source_module, name in helper_imports((RUNAS / f"{module}.py").read_text()):
        assert source_module in earlier, f"{module} imports {name} from {source_module}"
        defined = top_level_names((RUNAS / f"{source_module}.py").read_text())
        assert name in defined, f"{module} takes {name} from {source_module}, which re-exports it"


def test_every_helper_module_is_pasted_and_its_imports_dropped() -> None:
    on_disk = {p.stem for p in RUNAS.glob("helper_*.py")}
    assert on_disk == set(assemble.HELPER_MODULES)
    source = assemble.helper_source()
    for module in assemble.HELPER_MODULES:
        assert f"# --- {module}.py " in source
    assert "hpcportal.runas.helper_" not in source.replace("hpcportal.runas.helper_files", "")
    namespace: dict[str, object] = {"__name__": "hpcportal_runas_check"}
    exec(compile(source, "hpcportal-runas", "exec"), namespace)  # noqa: S102 (our own text)
    table = namespace["FILE_OPERATIONS"]
    assert isinstance(table, dict) and set(table) == set(FILE_OPERATIONS)
    assert set(FILE_OPERATIONS) | {"slurm", "terminal"} == OPERATIONS


def test_a_portal_import_left_in_the_helper_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = assemble.module_text

    def leaky(name: str) -> str:
        return real(name) + ("import hpcportal.config\n" if name == "helper_zip" else "")

    monkeypatch.setattr(assemble, "module_text", leaky)
    with pytest.raises(RuntimeError, match="imports the portal"):
        assemble.helper_source()


def imported_modules(source: str) -> set[str]:
    """The top-level packages ``source`` imports anywhere (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_assembled_helper_imports_only_the_standard_library() -> None:
    assert imported_modules("import ctypes\nfrom pydantic import BaseModel\n") == {
        "ctypes",
        "pydantic",
    }
    outside = imported_modules(assemble.helper_source()) - set(sys.stdlib_module_names)
    assert outside == set()
