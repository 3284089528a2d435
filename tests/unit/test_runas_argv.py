"""Which Slurm argv the run-as helper accepts: the allow-list, including the one
``scontrol update`` shape that extends a session's time limit."""

from __future__ import annotations

import pytest

from hpcportal.runas import helper


@pytest.mark.parametrize(
    "argv",
    [
        ["scontrol", "hold", "12"],
        ["scontrol", "update", "JobId=12", "TimeLimit=+60"],
        ["scontrol", "update", "NodeName=n1", "State=DOWN", "Reason=PSU"],  # admin console
        ["scancel", "--verbose", "12"],
    ],
)
def test_allowed(argv: list[str]) -> None:
    assert helper.check_slurm_argv(argv) == argv


@pytest.mark.parametrize(
    "argv",
    [
        ["scontrol", "update", "JobId=12", "TimeLimit=600"],  # only "+minutes"
        ["scontrol", "update", "JobId=12", "Partition=viz"],
        ["scontrol", "update", "JobId=12", "TimeLimit=+60", "UserId=0"],
        ["scontrol", "update", "NodeName=n1", "State=IDLE"],  # admins: DRAIN|DOWN|RESUME
        ["scontrol", "update", "NodeName=n1", "State=DOWN", "Weight=1"],
        ["scontrol", "update", "JobId=12 TimeLimit=+1", "TimeLimit=+1"],
        ["scontrol", "delete", "PartitionName=viz"],
        ["scontrol"],
        ["bash", "-c", "id"],
    ],
)
def test_refused(argv: list[str]) -> None:
    with pytest.raises(helper.Refused):
        helper.check_slurm_argv(argv)
