"""The commented portal.toml (``hpcportal config sample``) lists every setting, and
each value line, uncommented, gives back that setting's default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from hpcportal.cli.main import app
from hpcportal.config import DEFAULT_STATE_DIR, Settings
from hpcportal.services.operations.config_sample import sample_toml, toml_value


def test_every_setting_is_listed_once_with_its_description() -> None:
    text = sample_toml()
    listed = re.findall(r"^# ([a-z_][a-z0-9_]*) =", text, flags=re.M)
    assert listed == list(Settings.model_fields), "every field, once, in declaration order"
    for name, field in Settings.model_fields.items():
        if field.description:
            first_words = " ".join(field.description.split()[:4])
            assert first_words in " ".join(text.replace("# ", "").split()), name


def test_the_file_as_shipped_sets_nothing() -> None:
    """Every line is a comment: the installed file changes no default until edited."""
    assert tomllib.loads(sample_toml()) == {}


def test_uncommented_values_are_the_defaults() -> None:
    """The defaults of an installed portal (whose state folder is /var/lib/hpcportal)."""
    defaults = Settings(state_dir=DEFAULT_STATE_DIR)
    checked = 0
    for line in sample_toml().splitlines():
        match = re.fullmatch(r"# ([a-z_][a-z0-9_]*) = (.+)", line)
        if match is None:
            continue
        name = match[1]
        if Settings.model_fields[name].annotation is SecretStr:
            continue  # generated per process: the sample shows an empty string
        parsed = tomllib.loads(f"{name} = {match[2]}")
        if name != "state_dir":
            parsed["state_dir"] = DEFAULT_STATE_DIR
        assert getattr(Settings(**parsed), name) == getattr(defaults, name), name
        checked += 1
    fields = Settings.model_fields.values()
    skipped = [f for f in fields if f.default is None or f.annotation is SecretStr]
    assert checked == len(fields) - len(skipped) > 50


def test_unset_settings_are_named_unset() -> None:
    text = sample_toml()
    assert "# (unset by default; give a value to set it)\n# slurm_conf =\n" in text


def test_toml_values() -> None:
    assert toml_value('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert (
        toml_value([{"name": "home", "path": "{home}"}]) == '[{ name = "home", path = "{home}" }]'
    )
    assert tomllib.loads("x = " + toml_value(0.05))["x"] == 0.05


def test_cli_prints_and_writes_the_sample(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["config", "sample"])
    assert printed.exit_code == 0 and printed.output == sample_toml()
    target = tmp_path / "portal.toml"
    written = CliRunner().invoke(app, ["config", "sample", "--output", str(target)])
    assert written.exit_code == 0 and target.read_text() == sample_toml()
