"""The admin console's node commands against every release's recorded answers.

Recorded by ``tests/fixtures/slurm/record-admin-nodes.sh`` on a dev cluster of each
release (``<release>/actions/scontrol_*node*.txt``). ``Recorded`` stands in for the
run-as process boundary only (``SlurmExecutor._run_as``): it checks that the command
is exactly the recorded one, as the recorded user, and answers what Slurm answered;
the executor's own ``run`` (its call record, ``classify_failure``) is the real one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from hpcportal.errors import SlurmInvalidRequest, SlurmPermissionDenied
from hpcportal.slurm.admin_actions import (
    AdminCommand,
    DrainNodes,
    NodeRequest,
    RebootNodes,
    ResumeNodes,
    SlurmAdmin,
    node_commands,
)
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import Ran, SlurmExecutor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
REASON = "portal recording: bad DIMM"
#: ``Reason=TEXT [USER@TIMESTAMP]`` of ``scontrol show node``: who set it, and when.
REASON_LINE = re.compile(r"^\s*Reason=(?P<text>.*) \[(?P<user>[^@\]]+)@(?P<when>[^\]]+)\]$", re.M)


class Recorded(SlurmExecutor):
    """Answers one recorded command at the run-as boundary, and only that one."""

    def __init__(self, release: str, name: str) -> None:
        super().__init__(cluster=SlurmCluster(name="recorded"))
        text = (FIXTURES / release / "actions" / f"{name}.txt").read_text()
        head, _, rest = text.partition("--- stdout\n")
        self.stdout, _, self.stderr = rest.partition("--- stderr\n")
        command_line, exit_line = head.splitlines()[:2]
        self.line, _, user = command_line.removeprefix("$ ").rpartition(" (as ")
        self.user = user.rstrip(")")
        self.code = int(exit_line.split()[1])

    def _run_as(
        self,
        user: str,
        command: str,
        args: Sequence[str],
        stdin: bytes | None,
        env: dict[str, str],
        limit: float,
    ) -> tuple[int, bytes, str, tuple[str, ...]]:
        argv = (command, *args)
        # The recording prints argv joined by spaces (a reason keeps its own).
        assert (" ".join(argv), user) == (self.line, self.user)
        return self.code, self.stdout.encode(), self.stderr.strip(), argv


def run(release: str, name: str, request: NodeRequest) -> tuple[Recorded, AdminCommand]:
    executor = Recorded(release, name)
    (command,) = node_commands(request)
    outcome = SlurmAdmin(executor).run(command, as_user=executor.user)
    assert outcome.argv == command.argv
    assert list(executor.ran) == [Ran(command.argv, executor.user)]
    return executor, command


@pytest.mark.parametrize("release", RELEASES)
def test_an_administrator_drains_and_resumes(release: str) -> None:
    run(release, "scontrol_update_node_drain_admin", DrainNodes("node003", REASON))
    run(release, "scontrol_update_node_resume_admin", ResumeNodes("node003"))


@pytest.mark.parametrize("release", RELEASES)
def test_a_user_without_admin_level_is_refused_with_slurms_reason(release: str) -> None:
    with pytest.raises(SlurmPermissionDenied, match="Invalid user id"):
        run(release, "scontrol_update_node_drain_others", DrainNodes("node003", REASON))


@pytest.mark.parametrize(
    ("name", "request_", "said"),
    [
        ("scontrol_update_node_resume_idle", ResumeNodes("node003"), "Invalid node state"),
        ("scontrol_update_node_unknown", DrainNodes("nosuch007", REASON), "Invalid node name"),
        ("scontrol_reboot_no_program", RebootNodes("node003", REASON), "Unspecified error"),
    ],
)
@pytest.mark.parametrize("release", RELEASES)
def test_slurms_other_refusals_are_invalid_requests(
    release: str, name: str, request_: NodeRequest, said: str
) -> None:
    with pytest.raises(SlurmInvalidRequest, match=said):
        run(release, name, request_)


@pytest.mark.parametrize("release", RELEASES)
def test_a_drained_nodes_reason_names_who_set_it_and_when(release: str) -> None:
    shown = Recorded(release, "scontrol_show_node_drained").stdout
    assert "State=IDLE+DRAIN" in shown
    match = REASON_LINE.search(shown)
    assert match is not None, shown
    assert (match["text"], match["user"]) == (REASON, "carol")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", match["when"])
