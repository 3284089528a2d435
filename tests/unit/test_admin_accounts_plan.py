"""Account plans without a live Slurm: what a change does to an association's values
(``AssocChange``), which pending jobs a limit change would release or hold back
(``limit_effects``), and how ``apply`` answers slurmdbd's silent "Nothing deleted"
to a coordinator outside their accounts (recorded answers at the run-as boundary).

Planning against slurmdbd is tested on the live dev cluster
(tests/integration/test_admin_accounts.py); the commands against recordings
(tests/unit/test_slurm_admin_accounts.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import select

from hpcportal.db.models import AdminChange, AuditEntry
from hpcportal.db.session import Database
from hpcportal.errors import SlurmInvalidRequest, SlurmPermissionDenied
from hpcportal.services.admin import account_access
from hpcportal.services.admin.accounts import AccountRequest, AssocChange, limit_effects
from hpcportal.services.admin.plan import Plan
from hpcportal.services.identity import Principal
from hpcportal.slurm import admin_accounts
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.admin_accounts import AssocLimits
from hpcportal.slurm.admin_actions import SlurmAdmin
from hpcportal.slurm.models import Job
from hpcportal.slurm.states import JobStatus
from tests.unit.test_slurm_actions import RELEASES, recorded
from tests.unit.test_slurm_admin_nodes import Recorded
from tests.unit.test_slurm_admin_qos import Replay

BEFORE = AssocLimits(fairshare=3, max_jobs=2, max_wall_minutes=60, grp_tres={"cpu": 8})
DAVE = Principal("dave", 1005, 1005, ("physics",), "user")


def job(job_id: int, user: str, state: str, reason: str | None = None, limit: int = 30) -> Job:
    status = JobStatus.QUEUED if state == "PENDING" else JobStatus.RUNNING
    return Job(
        id=str(job_id),
        job_id=job_id,
        name="j",
        user=user,
        account="physics",
        partition="normal",
        state=state,
        status=status,
        reason=reason,
        time_limit_minutes=limit,
    )


def test_a_change_sets_only_what_it_names_and_null_removes_a_limit() -> None:
    change = AssocChange.model_validate(
        {"max_wall_minutes": None, "fairshare": None, "qos": [], "grp_jobs": 4}
    )
    after = change.applied_to(BEFORE.model_copy(update={"qos": ("high",)}))
    assert after.max_wall_minutes is None and after.fairshare == 1 and after.qos == ()
    assert after.grp_jobs == 4 and after.max_jobs == 2 and after.grp_tres == {"cpu": 8}
    assert AssocChange(fairshare="parent").applied_to(BEFORE).fairshare == "parent"
    with pytest.raises(ValueError):
        AssocChange(grp_tres="cpu=x").applied_to(BEFORE)
    with pytest.raises(ValueError):
        AssocChange(fairshare="most").applied_to(BEFORE)
    with pytest.raises(ValueError):
        AccountRequest.model_validate({"action": "rename", "name": "physics"})


def test_raising_a_limit_releases_the_jobs_waiting_on_it() -> None:
    jobs = [
        job(1, "bob", "PENDING", "AssocMaxJobsLimit"),
        job(2, "dave", "PENDING", "AssocGrpCpuLimit"),
        job(3, "dave", "PENDING", "Priority"),
        job(4, "bob", "RUNNING"),
        job(5, "bob", "RUNNING"),
    ]
    released, blocked = limit_effects(jobs, BEFORE, AssocChange(max_jobs=3).applied_to(BEFORE))
    assert [j.id for j in released] == ["1"] and blocked == []
    after = AssocChange.model_validate({"grp_tres": {}}).applied_to(BEFORE)
    released, blocked = limit_effects(jobs, BEFORE, after)
    assert [j.id for j in released] == ["2"] and blocked == []


def test_lowering_a_limit_holds_back_the_jobs_above_it() -> None:
    jobs = [
        job(1, "bob", "PENDING", "Priority", limit=120),
        job(2, "dave", "PENDING", "Priority", limit=20),
        job(3, "dave", "RUNNING"),
    ]
    after = AssocChange(max_wall_minutes=30).applied_to(BEFORE)
    released, blocked = limit_effects(jobs, BEFORE, after)
    assert released == [] and [j.id for j in blocked] == ["1"]
    released, blocked = limit_effects(jobs, BEFORE, AssocChange(max_jobs=1).applied_to(BEFORE))
    assert [j.id for j in blocked] == ["2"]


def _adapter(release: str) -> SlurmAdapter:
    """Reads as the portal: dave's roles as recorded (coordinator of physics)."""
    roles = Replay(recorded(release, "sacctmgr_acct_show_user_coord"))
    return cast(SlurmAdapter, SimpleNamespace(executor=roles))


@pytest.mark.parametrize("release", RELEASES)
def test_a_coordinator_outside_their_accounts_gets_a_403(database: Database, release: str) -> None:
    """slurmdbd deletes nothing and says only "Nothing deleted": for an association
    the plan read, from someone who coordinates other accounts, that is a refusal."""
    plan = Plan(
        kind="user.remove",
        target="assoc:bob@research",
        summary="Remove bob from account research",
        commands=(admin_accounts.user_remove("bob", "research"),),
    )
    admin = SlurmAdmin(Recorded(release, "sacctmgr_acct_coord_user_remove_other"))
    with pytest.raises(SlurmPermissionDenied, match="coordinator of account research"):
        account_access.apply(admin, _adapter(release), database, plan, DAVE, "try")
    with database.session() as session:
        assert session.scalars(select(AdminChange)).all() == []
        entries = session.scalars(select(AuditEntry)).all()
    assert [(e.username, e.action, e.result) for e in entries] == [
        ("dave", "admin.user.remove", "refused")
    ]


@pytest.mark.parametrize("release", RELEASES)
def test_nothing_done_in_a_coordinated_account_stays_what_it_is(
    database: Database, release: str
) -> None:
    """In an account dave coordinates, "Nothing deleted" is not a refusal: 400."""
    plan = Plan(
        kind="user.remove",
        target="assoc:alice@t_rec_acct",
        summary="Remove alice",
        commands=(admin_accounts.user_remove("alice", "t_rec_acct"),),
    )
    recording: Any = Recorded(release, "sacctmgr_acct_user_delete_unknown")
    recording.user = "dave"  # the same answer, asked by dave
    with pytest.raises(SlurmInvalidRequest):
        account_access.apply(SlurmAdmin(recording), _adapter(release), database, plan, DAVE, "try")
