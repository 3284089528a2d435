"""Site apps written by tests, beside the shipped ones."""

from __future__ import annotations

from pathlib import Path


def write_broken_app(base: Path, name: str) -> None:
    """A site app (id ``broken``) whose job fails at once with a line on stderr, to see
    a failed launch reported with the end of its log."""
    folder = base / "broken"
    folder.mkdir(parents=True)
    (folder / "app.yaml").write_text(
        f"id: broken\nname: {name}\nconnection: vnc\n"
        "form:\n  - {name: partition, type: partition, label: Partition, default: viz}\n"
    )
    (folder / "script.sh.j2").write_text(
        "#!/bin/bash\necho 'the viewer cannot find its licence' >&2\nexit 3\n"
    )
