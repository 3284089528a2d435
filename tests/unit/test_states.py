from hpcportal.slurm.states import JOB_STATES, JobStatus, NodeStatus, job_status, node_status


def test_every_known_job_state_maps_to_a_status() -> None:
    for name in JOB_STATES:
        assert job_status(name) is not JobStatus.UNDETERMINED


def test_unknown_job_state_is_undetermined_not_a_guess() -> None:
    assert job_status("SOMETHING_NEW") is JobStatus.UNDETERMINED
    assert job_status("") is JobStatus.UNDETERMINED


def test_pending_with_hold_reason_is_held() -> None:
    assert job_status("PENDING", "JobHeldUser") is JobStatus.QUEUED_HELD
    assert job_status("PENDING", "JobHeldAdmin") is JobStatus.QUEUED_HELD
    assert job_status("PENDING", "Resources") is JobStatus.QUEUED


def test_cancelled_by_uid_suffix_is_understood() -> None:
    assert job_status("CANCELLED by 1001") is JobStatus.CANCELLED


def test_node_flags_change_what_people_see() -> None:
    assert node_status("idle", ["DRAIN"]) is NodeStatus.DRAINED
    assert node_status("mixed", ["DRAIN"]) is NodeStatus.DRAINING
    assert node_status("IDLE+DRAIN") is NodeStatus.DRAINED
    assert node_status("down", []) is NodeStatus.DOWN
    assert node_status("idle", ["NOT_RESPONDING"]) is NodeStatus.DOWN
    assert node_status("idle", ["MAINTENANCE"]) is NodeStatus.MAINTENANCE
    assert node_status("allocated", []) is NodeStatus.ALLOCATED
    assert node_status("weird", []) is NodeStatus.UNDETERMINED
