"""The interactive app catalog: loading folders, checking definitions and form values."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcportal.config import Settings
from hpcportal.errors import Forbidden, InvalidInput, NotFound
from hpcportal.services.apps import SHIPPED_DIR, AppCatalog, load_app
from hpcportal.services.identity import Principal
from hpcportal.services.template_render import _render

ALICE = Principal("alice", 2001, 2001, ("alice",), "user")
CAROL = Principal("carol", 2003, 2003, ("carol", "hpc-admins"), "admin")

APP_YAML = """\
id: {id}
name: Viewer
description: Looks at things.
category: Visualisation
connection: vnc
groups: {groups}
form:
  - {{name: partition, type: partition, label: Partition, default: viz}}
  - {{name: hours, type: integer, label: Hours, default: 1, min: 1, max: 4}}
  - {{name: resolution, type: select, label: Size, default: 800x600, options: [800x600, 1024x768]}}
settings:
  viewer: /opt/viewer/bin/view
"""
SCRIPT = "#!/bin/bash\nexec {{ viewer }} --size {{ resolution }} --dir {{ session_dir }}\n"


def make_app(base: Path, app_id: str = "viewer", groups: str = "[]", script: str = SCRIPT) -> Path:
    folder = base / app_id
    folder.mkdir(parents=True)
    (folder / "app.yaml").write_text(APP_YAML.format(id=app_id, groups=groups))
    (folder / "script.sh.j2").write_text(script)
    return folder


def catalog(tmp_path: Path, shipped: bool = False) -> AppCatalog:
    settings = Settings(app_dirs=[tmp_path], include_shipped_apps=shipped)
    return AppCatalog.load(settings)


def test_site_app_loads_and_renders_values_as_single_words(tmp_path: Path) -> None:
    make_app(tmp_path)
    app = catalog(tmp_path).get("viewer", ALICE)
    options = app.options({"hours": "3"})
    assert options == {"partition": "viz", "hours": 3, "resolution": "800x600"}
    values = app.script_values(options, {"session_dir": "/home/alice/my dir"})
    assert "hours" not in values and "partition" not in values  # resources go to sbatch
    text = _render(app.script, values)
    assert "--dir '/home/alice/my dir'" in text
    assert "exec /opt/viewer/bin/view --size 800x600" in text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"hours": "9"}, "from 1 to 4"),
        ({"hours": "two"}, "whole number"),
        ({"resolution": "1x1; rm -rf ~"}, "choose one of"),
        ({"partition": "viz --uid=0"}, "partition name"),
        ({"colour": "red"}, "no field 'colour'"),
    ],
)
def test_bad_form_values_are_clear_422s(
    tmp_path: Path, raw: dict[str, object], message: str
) -> None:
    make_app(tmp_path)
    app = catalog(tmp_path).get("viewer", ALICE)
    with pytest.raises(InvalidInput, match=message):
        app.options(raw)


def test_group_restricted_app_is_hidden_and_refused_for_others(tmp_path: Path) -> None:
    make_app(tmp_path, groups="[hpc-admins]")
    apps = catalog(tmp_path)
    assert [a.id for a in apps.visible(ALICE)] == []
    assert [a.id for a in apps.visible(CAROL)] == ["viewer"]
    with pytest.raises(Forbidden, match="hpc-admins"):
        apps.get("viewer", ALICE)
    with pytest.raises(NotFound):
        apps.get("nothing", ALICE)


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ('#!/bin/bash\necho "{{ viewer }}"\n', "inside"),
        ("#!/bin/bash\n{% if %}\n", "syntax"),
    ],
)
def test_an_unsafe_or_broken_script_skips_the_app_with_a_reason(
    tmp_path: Path, script: str, problem: str
) -> None:
    make_app(tmp_path, script=script)
    apps = catalog(tmp_path)
    assert apps.visible(CAROL) == []
    assert len(apps.problems) == 1 and problem in apps.problems[0].lower()


def test_folder_name_must_match_the_id(tmp_path: Path) -> None:
    folder = make_app(tmp_path)
    folder.rename(tmp_path / "other")
    with pytest.raises(InvalidInput, match="differs from its folder"):
        load_app(tmp_path / "other")


def test_site_app_replaces_a_shipped_one_with_the_same_id(tmp_path: Path) -> None:
    make_app(tmp_path, app_id="desktop")
    apps = catalog(tmp_path, shipped=True)
    assert apps.get("desktop", ALICE).definition.name == "Viewer"


def test_shipped_apps_load_without_problems() -> None:
    apps = AppCatalog.load(Settings(include_shipped_apps=True))
    assert apps.problems == []
    ids = {a.id for a in apps.visible(ALICE)}
    assert {"desktop", "texteditor", "jupyter"} <= ids
    assert apps.get("jupyter", ALICE).definition.connection == "web"
    assert all(app.icon_path() is not None for app in apps.visible(ALICE))
    assert SHIPPED_DIR.is_dir()
