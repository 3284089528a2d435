"""The commented ``portal.toml`` a package installs: every setting, written from ``Settings``.

Generated rather than kept by hand so it can never miss a field or show a stale
default: each field's description becomes its comment and its default the commented
value (``hpcportal config sample``), as on an installed portal (``INSTALLED_DEFAULTS``:
the state folder is /var/lib/hpcportal there, whatever the building machine has).
Uncommenting a value line gives back that default, which the unit test checks by
parsing every line with ``tomllib``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from hpcportal.config import DEFAULT_STATE_DIR, Settings

HEADER = """\
# hpcportal configuration (TOML). Every setting the portal reads is listed below with
# its default, commented out: uncomment a line to change it.
#
# Each setting may also come from the environment as HPCPORTAL_<NAME> (upper case),
# which wins over this file; secrets are best kept in files (/etc/hpcportal/secrets/,
# systemd credentials), as their descriptions say. The defaults shown are those of an
# installed portal (state in /var/lib/hpcportal). `hpcportal config sample` prints
# this file again for the installed version; a package upgrade keeps your edited copy
# (a conffile).
"""

_UNSET = "unset by default; give a value to set it"
_GENERATED = "generated when unset, as said above; better from a secret file than here"
#: Defaults that depend on the host (``/var/lib/hpcportal`` existing): shown as on the
#: installed portal this file is for, not as on the machine that built the package.
INSTALLED_DEFAULTS: dict[str, object] = {
    "state_dir": DEFAULT_STATE_DIR,
    "database_url": f"sqlite:///{DEFAULT_STATE_DIR / 'hpcportal.db'}",
}


def toml_value(value: object) -> str:
    """One TOML value for a default (strings and paths as JSON strings, which TOML reads)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, BaseModel):
        return toml_value(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        items = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {type(value).__name__}")


def _field_block(name: str, field: FieldInfo) -> list[str]:
    description = field.description or "(no description in Settings)"
    lines = textwrap.wrap(description, width=86, break_on_hyphens=False)
    out = [f"# {line}" for line in lines]
    if field.default_factory is not None and field.annotation is SecretStr:
        out.append(f"# ({_GENERATED})")
        out.append(f'# {name} = ""')
        return out
    if name in INSTALLED_DEFAULTS:
        default = INSTALLED_DEFAULTS[name]
    else:
        default = field.get_default(call_default_factory=True, validated_data={})
    if default is None:
        out.append(f"# ({_UNSET})")
        out.append(f"# {name} =")
    else:
        out.append(f"# {name} = {toml_value(default)}")
    return out


def sample_toml(settings_cls: type[Settings] = Settings) -> str:
    """The whole commented file, settings in the order ``Settings`` declares them."""
    blocks = [HEADER.rstrip("\n")]
    for name, field in settings_cls.model_fields.items():
        blocks.append("\n".join(_field_block(name, field)))
    return "\n\n".join(blocks) + "\n"
