"""The shipped interactive apps: app.yaml, icon and job script, checked without Slurm.

Each script is rendered the way the portal renders it (``template_render``'s sandbox,
every value one shell-quoted word) with sample values, then parsed by ``bash -n``.
tests/integration/test_app_runtimes.py runs them for real on the dev cluster.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

import hpcportal
from hpcportal.errors import InvalidInput
from hpcportal.services.template_render import _render, compile_script

APPS_DIR = Path(hpcportal.__file__).resolve().parent / "apps"
REPO_ROOT = Path(__file__).resolve().parents[2]
APP_IDS = sorted(p.name for p in APPS_DIR.iterdir() if (p / "app.yaml").is_file())
SBATCH_FIELDS = {"partition": "partition", "hours": "integer", "cpus": "integer"}
SBATCH_FIELDS |= {"memory_gb": "integer", "gpus": "integer"}
KEYS = {"id", "name", "description", "category", "icon", "connection", "groups", "form"}
KEYS |= {"settings"}
SESSION_ID = "3f9c2a7b51d04e6e"
SESSION_DIR = f"/home/alice/hpcportal/sessions/{SESSION_ID}"


def load(app_id: str) -> dict[str, Any]:
    meta = yaml.safe_load((APPS_DIR / app_id / "app.yaml").read_text())
    assert isinstance(meta, dict)
    return meta


def script_values(meta: dict[str, Any], session_dir: str = SESSION_DIR) -> dict[str, Any]:
    """What the portal passes: session values, non-sbatch form fields, settings."""
    values: dict[str, Any] = {
        "session_id": SESSION_ID,
        "session_dir": session_dir,
        "connection_file": f"{session_dir}/connection.json",
        "base_url": f"/node/{SESSION_ID}/",
        "portal_client_cert": "MIIBkTCCATegAwIBAgIUSample+Base64/DER=",
    }
    values |= {f["name"]: f["default"] for f in meta["form"] if f["name"] not in SBATCH_FIELDS}
    values |= meta["settings"]
    return values


def render(app_id: str, values: dict[str, Any]) -> str:
    source = (APPS_DIR / app_id / "script.sh.j2").read_text()
    return _render(compile_script(source), values)


def test_the_three_apps_ship() -> None:
    assert APP_IDS == ["desktop", "jupyter", "texteditor"]
    for app_id in APP_IDS:
        files = {p.name for p in (APPS_DIR / app_id).iterdir()}
        assert {"app.yaml", "script.sh.j2", "icon.svg"} <= files, app_id


@pytest.mark.parametrize("app_id", APP_IDS)
def test_app_yaml_follows_the_contract(app_id: str) -> None:
    meta = load(app_id)
    assert set(meta) == KEYS
    assert meta["id"] == app_id
    assert meta["connection"] in ("vnc", "web")
    assert isinstance(meta["groups"], list)
    assert all(isinstance(v, str) for v in meta["settings"].values())
    assert (APPS_DIR / app_id / meta["icon"]).is_file()
    names = [f["name"] for f in meta["form"]]
    assert len(set(names)) == len(names)
    for field in meta["form"]:
        assert {"name", "type", "label", "default"} <= set(field), field
        if field["name"] in SBATCH_FIELDS:
            assert field["type"] == SBATCH_FIELDS[field["name"]], field
        if field["type"] == "integer":
            assert field["min"] <= field["default"] <= field["max"], field
        elif field["type"] == "select":
            assert field["default"] in field["options"], field
    by_name = {f["name"]: f for f in meta["form"]}
    assert by_name["partition"]["default"] == "viz"
    hours = by_name["hours"]
    assert (hours["default"], hours["min"], hours["max"]) == (1, 1, 8)
    if meta["connection"] == "vnc":
        resolution = by_name["resolution"]
        assert resolution["options"] == ["1024x768", "1280x800", "1600x900", "1920x1080"]
        assert resolution["default"] == "1280x800"


def test_the_apps_are_what_was_asked_for() -> None:
    assert (load("desktop")["category"], load("desktop")["connection"]) == ("Desktops", "vnc")
    assert (load("texteditor")["category"], load("texteditor")["connection"]) == ("Editors", "vnc")
    jupyter = load("jupyter")
    assert (jupyter["category"], jupyter["connection"]) == ("Notebooks", "web")
    assert jupyter["settings"]["jupyter"] == "/opt/hpcportal/apps/jupyter/bin/jupyter"


@pytest.mark.parametrize("app_id", APP_IDS)
def test_icon_is_a_small_self_contained_svg(app_id: str) -> None:
    path = APPS_DIR / app_id / load(app_id)["icon"]
    text = path.read_text()
    assert len(text) < 4096
    root = ET.fromstring(text)  # noqa: S314 - our own file
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox")
    assert not re.search(r"href|url\(|<script|<image|<foreignObject|@import", text, re.I)


@pytest.mark.parametrize("app_id", APP_IDS)
def test_script_renders_and_bash_parses_it(app_id: str, tmp_path: Path) -> None:
    script = render(app_id, script_values(load(app_id)))
    assert script.startswith("#!/bin/bash\n")
    assert not re.search(r"^\s*#\s*SBATCH", script, re.I | re.M)
    assert "{{" not in script and "{%" not in script
    target = tmp_path / "script.sh"
    target.write_text(script)
    proc = subprocess.run(["bash", "-n", str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("app_id", APP_IDS)
def test_every_script_value_is_needed(app_id: str) -> None:
    """Each value the script uses is one the portal passes (the sandbox is strict)."""
    values = script_values(load(app_id))
    for name in ("session_dir", "connection_file", "portal_client_cert"):
        with pytest.raises(InvalidInput, match="undefined"):
            render(app_id, {k: v for k, v in values.items() if k != name})


@pytest.mark.parametrize("app_id", APP_IDS)
def test_values_reach_the_shell_unchanged(app_id: str) -> None:
    """A session folder full of shell syntax stays one word: bash gets it back as is."""
    weird = '/home/al ice/it\'s "$(touch /tmp/x)" `id` $HOME;*'
    meta = load(app_id)
    values = script_values(meta, weird)
    script = render(app_id, values)
    names = [n for n in values if re.search(rf"^{n}=", script, re.M)]
    assert {"session_dir", "connection_file"} <= set(names)
    assignments = [line for line in script.splitlines() if re.match(r"^[a-z_]+=", line)]
    probe = "\n".join(assignments[: len(names)])
    probe += "\nprintf '%s\\0' " + " ".join(f'"${n}"' for n in names)
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\0")[:-1] == [str(values[n]) for n in names]


def test_package_data_ships_the_app_files() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["hpcportal"]
    package = APPS_DIR.parent
    for path in APPS_DIR.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".j2", ".svg"):
            relative = str(path.relative_to(package))
            assert any(fnmatch(relative, g) for g in globs), relative
