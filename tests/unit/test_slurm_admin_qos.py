"""QoS admin commands against every release's recorded sacctmgr answers.

The recordings (``tests/fixtures/slurm/<release>/actions/sacctmgr_qos_*.txt``,
``record-qos-actions.sh``) were made with the argv ``admin_qos`` builds: each test
builds the command from a typed ``QosSpec``, checks it equals the recorded argv, and
reads the recorded answer through the real executor error classification. ``Replay``
stands in for the process boundary only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from hpcportal.errors import SlurmInvalidRequest, SlurmOutputUnreadable, SlurmPermissionDenied
from hpcportal.slurm import admin_qos, sacctmgr_output
from hpcportal.slurm.admin_actions import AdminCommand, AdminOutcome, SlurmAdmin
from hpcportal.slurm.admin_qos import QosLimits, QosSpec
from hpcportal.slurm.cluster import SlurmCluster
from hpcportal.slurm.executor import CommandResult, SlurmExecutor, classify_failure
from tests.unit.test_slurm_actions import RELEASES, Recording, recorded

CREATED = QosSpec(
    name="t_rec_qos",
    priority=10,
    preempt="normal",
    preempt_mode="requeue",
    flags=["DenyOnLimit"],
    grp_tres="cpu=16",
    grp_jobs=4,
    max_tres_per_job={"cpu": 2, "mem": "1536M"},
    max_tres_per_user="cpu=4,mem=8G",
    max_wall_minutes=60,
    max_jobs_per_user=3,
    max_submit_jobs_per_user=5,
)
MODIFIED = QosLimits.model_validate(
    {
        **CREATED.limits().model_dump(),
        "priority": 20,
        "preempt": (),
        "flags": (),
        "max_tres_per_user": {"cpu": 8},
        "max_wall_minutes": None,
    }
)


class Replay(SlurmExecutor):
    """Answers one recorded command, and only that one (reads as the portal)."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(cluster=SlurmCluster(name="recorded"))
        self.recording = recording

    def run(
        self,
        command: str,
        args: Sequence[str],
        *,
        as_user: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        rec = self.recording
        assert (command, *args) == rec.argv, ((command, *args), rec.argv)
        assert as_user in (rec.user, None), as_user
        if rec.code != 0:
            raise classify_failure(command, rec.stderr.strip())
        return CommandResult(rec.argv, 0, rec.stdout.encode(), rec.stderr.strip(), 0.01)


def run(release: str, name: str, command: AdminCommand) -> AdminOutcome:
    rec = recorded(release, name)
    assert command.argv == rec.argv
    outcome = SlurmAdmin(Replay(rec)).run(command, as_user=rec.user)
    sacctmgr_output.check_done(command.args, outcome.stdout)
    return outcome


def read(release: str, name: str) -> QosSpec | None:
    return admin_qos.read_qos(Replay(recorded(release, name)), "t_rec_qos")


@pytest.mark.parametrize("release", RELEASES)
def test_create_read_modify_delete(release: str) -> None:
    assert read(release, "sacctmgr_qos_show_unknown") is None
    run(release, "sacctmgr_qos_add", admin_qos.qos_create(CREATED))
    # Read back as sacctmgr prints it (mem=1.50G, 01:00:00): the values given.
    assert read(release, "sacctmgr_qos_show") == CREATED
    change = admin_qos.qos_modify("t_rec_qos", CREATED.limits(), MODIFIED)
    assert change is not None
    run(release, "sacctmgr_qos_modify", change)
    shown = read(release, "sacctmgr_qos_show_modified")
    assert shown is not None and shown.limits() == MODIFIED
    run(release, "sacctmgr_qos_delete", admin_qos.qos_delete("t_rec_qos"))


@pytest.mark.parametrize("release", RELEASES)
def test_a_user_without_admin_level_gets_slurms_refusal(release: str) -> None:
    commands = {
        "sacctmgr_qos_add_refused": admin_qos.qos_create(QosSpec(name="t_rec_qos", priority=10)),
        "sacctmgr_qos_modify_refused": admin_qos.qos_modify(
            "t_rec_qos", QosLimits(priority=10), QosLimits(priority=20)
        ),
        "sacctmgr_qos_delete_refused": admin_qos.qos_delete("t_rec_qos"),
    }
    for name, command in commands.items():
        assert command is not None
        with pytest.raises(SlurmPermissionDenied, match=r"(?i)permission denied"):
            run(release, name, command)


@pytest.mark.parametrize("release", RELEASES)
def test_nothing_done_and_bad_values_are_invalid_requests(release: str) -> None:
    with pytest.raises(SlurmInvalidRequest):
        existing = QosSpec(name="t_rec_qos", priority=10)
        run(release, "sacctmgr_qos_add_existing", admin_qos.qos_create(existing))
    with pytest.raises(SlurmInvalidRequest, match="t_rec_nosuch"):
        before, after = QosLimits(), QosLimits(preempt=("t_rec_nosuch",))
        run(
            release,
            "sacctmgr_qos_modify_bad_preempt",
            admin_qos.qos_modify("t_rec_qos", before, after) or admin_qos.qos_delete("x"),
        )
    with pytest.raises(SlurmInvalidRequest):
        modify = admin_qos.qos_modify("t_rec_nosuch", QosLimits(), QosLimits(priority=20))
        assert modify is not None
        run(release, "sacctmgr_qos_modify_unknown", modify)
    with pytest.raises(SlurmInvalidRequest):
        run(release, "sacctmgr_qos_delete_unknown", admin_qos.qos_delete("t_rec_qos"))


def test_the_create_argv_is_built_in_one_fixed_shape() -> None:
    assert admin_qos.qos_create(QosSpec(name="Plain")).argv == (
        "sacctmgr", "-i", "add", "qos", "Name=plain",
    )  # fmt: skip
    assert admin_qos.qos_modify("x", QosLimits(), QosLimits()) is None


def test_removing_limits_sets_them_to_minus_one() -> None:
    before = QosLimits(max_tres_per_user={"cpu": 4, "mem": 1024}, max_jobs_per_user=3)
    after = QosLimits(max_tres_per_user={"mem": 2048})
    command = admin_qos.qos_modify("x", before, after)
    assert command is not None
    assert command.args[-2:] == ("MaxTRESPerUser=mem=2048M,cpu=-1", "MaxJobsPerUser=-1")


@pytest.mark.parametrize(
    "values",
    [
        {"name": "-i"},
        {"name": "a b"},
        {"name": "x set Priority=1"},
        {"name": "where"[:0]},
        {"name": "q", "priority": -1},
        {"name": "q", "priority": 2**40},
        {"name": "q", "preempt": ["--help"]},
        {"name": "q", "flags": ["NoSuchFlag"]},
        {"name": "q", "preempt_mode": "gang,requeue"},
        {"name": "q", "max_tres_per_user": "cpu=-1"},
        {"name": "q", "max_tres_per_user": "cpu=4G"},
        {"name": "q", "max_tres_per_user": "mem=8Q"},
        {"name": "q", "max_tres_per_user": "cpu 4"},
        {"name": "q", "max_tres_per_user": {"gres/gpu name": 1}},
        {"name": "q", "grp_tres": "cpu=1,Flags=x"},
        {"name": "q", "max_wall_minutes": -5},
        {"name": "q", "unknown": 1},
    ],
)
def test_input_that_could_become_a_flag_or_a_bad_value_is_refused(
    values: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        QosSpec.model_validate(values)


def test_a_report_of_the_wrong_shape_is_unreadable() -> None:
    command = admin_qos.qos_delete("t_rec_qos")
    with pytest.raises(SlurmOutputUnreadable):
        sacctmgr_output.check_done(command.args, " Deleting QOS(s)...\n")
    with pytest.raises(SlurmOutputUnreadable):
        sacctmgr_output.check_done(command.args, "something else\n")
    with pytest.raises(SlurmInvalidRequest):
        sacctmgr_output.check_done(command.args, " Nothing deleted\n")
    with pytest.raises(SlurmOutputUnreadable):
        admin_qos.parse_qos_table("Name|Priority\nx|1\n")


def test_memory_reads_back_as_the_same_megabytes() -> None:
    # sacctmgr divides by 1024 only while the count is a multiple of 512 (live 22.05:
    # 1536M -> 1.50G, 1280M -> 1280M, 1572864M -> 1.50T).
    assert admin_qos.tres_count("mem", "1.50G") == 1536
    assert admin_qos.tres_count("mem", "1.50T") == 1572864
    assert admin_qos.tres_count("mem", "1280M") == 1280
    with pytest.raises(ValueError, match="whole number"):
        admin_qos.tres_count("mem", "1.3G")
    with pytest.raises(ValueError, match="only mem"):
        admin_qos.tres_count("vmem", "2G")
