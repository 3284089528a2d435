"""The run-as helper as one program: ``helper.py`` with its file operations pasted in.

The helper's file operations are kept in several modules, one concern each (walking a
path, reading, room and usage, writing, trash, zip, search, uploads, and the table of
operations), so each reads in one sitting. The program run as the user must still be
one self-contained, stdlib-only file: under runuser its source travels in argv (which
Linux caps at 128 KiB per argument), and ``hpcportal runas install`` writes it to one
root-owned path that the sudoers rule names and an administrator audits. So
:func:`helper_source` pastes the modules, in :data:`HELPER_MODULES` order (each uses
only what the ones before it define), between the markers in ``helper.py``, dropping
their imports of one another (there for tests and mypy); nothing else is changed.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

from hpcportal.runas.denied import DenyList, fix_deny_list
from hpcportal.runas.slurm_dir import fix_slurm_dir

_HERE = Path(__file__).resolve().parent
EMBED_START, EMBED_END = "# >>> helper_files\n", "# <<< helper_files\n"
#: The helper's file-operation modules, in the order they are pasted.
HELPER_MODULES = (
    "helper_walk",
    "helper_read",
    "helper_space",
    "helper_write",
    "helper_trash",
    "helper_zip",
    "helper_search",
    "helper_upload",
    "helper_files",
)
#: ``from hpcportal.runas.helper_x import a, b`` or its parenthesised form.
_OWN_IMPORT = re.compile(r"^from hpcportal\.runas\.helper_\w+ import (?:\([^)]*\)|[^\n]*)\n", re.M)
_ANY_PORTAL_IMPORT = re.compile(r"^\s*(?:from|import)\s+hpcportal\b", re.M)
_FUTURE = "from __future__ import annotations\n"

#: The interpreter for the helper under runuser: a system one, because the portal's own
#: may live where the target user cannot read it (a virtualenv under /root).
SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)),
    sys.executable,
)


def module_text(name: str) -> str:
    """One helper module as it is pasted: without its ``__future__`` import and its
    imports of the other helper modules (their names are defined above it)."""
    text = (_HERE / f"{name}.py").read_text()
    text = _OWN_IMPORT.sub("", text.replace(_FUTURE, "", 1))
    return f"# --- {name}.py {'-' * (78 - len(name))}\n{text}"


def helper_source() -> str:
    """The helper as one self-contained program: ``helper.py`` with the modules of
    :data:`HELPER_MODULES` pasted between its markers.

    Both the runuser path and ``hpcportal runas install`` use this text. It imports
    nothing of the portal (checked here: such an import would fail as the user).
    """
    main = (_HERE / "helper.py").read_text()
    head, rest = main.split(EMBED_START, 1)
    _, tail = rest.split(EMBED_END, 1)
    files = "\n\n".join(module_text(name) for name in HELPER_MODULES)
    source = f"{head}{EMBED_START}{files}{EMBED_END}{tail}"
    found = _ANY_PORTAL_IMPORT.search(source)
    if found is not None:
        raise RuntimeError(f"the assembled helper still imports the portal: {found.group()!r}")
    return source


@functools.cache
def helper_program(slurm_dir: Path | None, deny: DenyList) -> str:
    """The helper's source with the Slurm folder and the deny list fixed in its text
    (``slurm_dir`` must have passed ``trusted_slurm_dir``)."""
    return fix_deny_list(fix_slurm_dir(helper_source(), slurm_dir), deny)
