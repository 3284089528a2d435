"""Account, user and association commands against every release's recorded answers.

The recordings (``tests/fixtures/slurm/<release>/actions/sacctmgr_acct_*.txt``,
``record-account-actions.sh``) were made with the argv ``admin_accounts`` builds:
each test builds the command from typed values, checks it equals the recorded argv
(``run`` asserts it), and reads the recorded answer through the real executor error
classification and ``sacctmgr_output.check_done``. ``Replay`` stands in for the
process boundary only.
"""

from __future__ import annotations

import pytest

from hpcportal.errors import SlurmInvalidRequest, SlurmOutputUnreadable, SlurmPermissionDenied
from hpcportal.slurm import admin_accounts, sacctmgr_output
from hpcportal.slurm.admin_accounts import AccountInfo, Association, AssocLimits
from tests.unit.test_slurm_actions import RELEASES, recorded
from tests.unit.test_slurm_admin_qos import Replay, run

ACCOUNT = "t_rec_acct"
ACCOUNT_LIMITS = AssocLimits(
    fairshare=5, grp_tres="cpu=16", grp_jobs=10, qos="normal,high", default_qos="normal"
)
USER_LIMITS = AssocLimits(
    fairshare=2,
    grp_tres={"cpu": 8},
    grp_jobs=4,
    grp_submit_jobs=8,
    max_jobs=3,
    max_submit_jobs=6,
    max_wall_minutes=60,
    max_tres_per_job={"cpu": 2, "mem": "1536M"},
    qos=["high", "normal"],
    default_qos="normal",
)
USER_MODIFIED = USER_LIMITS.model_copy(
    update={
        "fairshare": "parent",
        "max_jobs": None,
        "max_wall_minutes": None,
        "max_tres_per_job": {"cpu": 4},
        "qos": ("normal",),
    }
)
INFO = AccountInfo(name=ACCOUNT, description="recording", organization="hpcdev")


def assocs(release: str, name: str) -> list[Association]:
    return admin_accounts.read_associations(Replay(recorded(release, name)), ACCOUNT)


@pytest.mark.parametrize("release", RELEASES)
def test_account_and_user_lifecycle(release: str) -> None:
    assert assocs(release, "sacctmgr_acct_show_assoc_unknown") == []
    run(
        release,
        "sacctmgr_acct_add",
        admin_accounts.account_create(ACCOUNT, "root", "recording", "hpcdev", ACCOUNT_LIMITS),
    )
    run(release, "sacctmgr_acct_user_add", admin_accounts.user_add("alice", ACCOUNT, USER_LIMITS))
    # Read back as sacctmgr prints it (mem=1.50G, 01:00:00): exactly the values given.
    assert assocs(release, "sacctmgr_acct_show_assoc") == [
        Association(account=ACCOUNT, parent="root", limits=ACCOUNT_LIMITS),
        Association(account=ACCOUNT, user="alice", limits=USER_LIMITS),
    ]
    change = admin_accounts.user_modify("alice", ACCOUNT, USER_LIMITS, USER_MODIFIED)
    assert change is not None
    run(release, "sacctmgr_acct_user_modify", change)
    own = Association(account=ACCOUNT, parent="root", limits=ACCOUNT_LIMITS)
    moved_limits = ACCOUNT_LIMITS.model_copy(
        update={"fairshare": 7, "grp_tres": {}, "grp_jobs": 20}
    )
    moved = own.model_copy(update={"limits": moved_limits, "parent": "physics"})
    info = INFO.model_copy(update={"description": "recorded"})
    modify, move = admin_accounts.account_modify(ACCOUNT, (INFO, own), (info, moved))
    run(release, "sacctmgr_acct_modify", modify)
    run(release, "sacctmgr_acct_move", move)
    assert assocs(release, "sacctmgr_acct_show_assoc_modified") == [
        moved,
        Association(account=ACCOUNT, user="alice", limits=USER_MODIFIED),
    ]
    run(release, "sacctmgr_acct_user_delete", admin_accounts.user_remove("alice", ACCOUNT))
    run(release, "sacctmgr_acct_delete", admin_accounts.account_delete(ACCOUNT))


@pytest.mark.parametrize("release", RELEASES)
def test_accounts_and_coordinators_are_read(release: str) -> None:
    rec = recorded(release, "sacctmgr_acct_show_accounts")
    accounts = {a.name: a for a in admin_accounts.read_accounts(Replay(rec))}
    assert accounts["physics"].coordinators == ("dave",)
    assert accounts["root"].description == "default root account"
    # Moved under physics, the account is coordinated by physics' coordinator too.
    assert accounts[ACCOUNT] == INFO.model_copy(
        update={"description": "recorded", "coordinators": ("dave",)}
    )
    roles = admin_accounts.read_roles(
        Replay(recorded(release, "sacctmgr_acct_show_user_coord")), "dave"
    )
    assert roles.coordinates == ("physics", ACCOUNT)
    assert not roles.slurm_admin


@pytest.mark.parametrize("release", RELEASES)
def test_a_coordinator_manages_users_of_their_account(release: str) -> None:
    run(
        release,
        "sacctmgr_acct_coord_user_add",
        admin_accounts.user_add("bob", "physics", AssocLimits()),
    )
    run(release, "sacctmgr_acct_coord_user_remove", admin_accounts.user_remove("bob", "physics"))
    # Another account: adding is refused with Slurm's reason ...
    with pytest.raises(SlurmPermissionDenied, match="Access/permission denied"):
        run(
            release,
            "sacctmgr_acct_coord_user_add_other",
            admin_accounts.user_add("dave", "research", AssocLimits()),
        )
    # ... removing matches nothing (the service tells that refusal; Slurm says only this).
    with pytest.raises(SlurmInvalidRequest):
        run(
            release,
            "sacctmgr_acct_coord_user_remove_other",
            admin_accounts.user_remove("bob", "research"),
        )


@pytest.mark.parametrize("release", RELEASES)
def test_a_user_without_rights_gets_slurms_refusal(release: str) -> None:
    with pytest.raises(SlurmPermissionDenied, match=r"Slurm refused: .*(permission denied|admins)"):
        run(
            release,
            "sacctmgr_acct_add_refused",
            admin_accounts.account_create(ACCOUNT, "root", "recording", "hpcdev", AssocLimits()),
        )
    with pytest.raises(SlurmPermissionDenied, match="Slurm refused"):
        run(release, "sacctmgr_acct_delete_refused", admin_accounts.account_delete(ACCOUNT))
    modify = admin_accounts.user_modify("alice", ACCOUNT, AssocLimits(), AssocLimits(max_jobs=30))
    assert modify is not None
    # slurmdbd tells a plain user's modify differently per release: refused (22.05),
    # "Data has not changed" (24.11), "Nothing modified" (26.05); never a success.
    with pytest.raises((SlurmPermissionDenied, SlurmInvalidRequest)):
        run(release, "sacctmgr_acct_user_modify_refused", modify)


@pytest.mark.parametrize("release", RELEASES)
def test_nothing_done_is_never_success(release: str) -> None:
    cases = {
        "sacctmgr_acct_add_existing": admin_accounts.account_create(
            ACCOUNT, "root", "recording", "hpcdev", AssocLimits()
        ),
        "sacctmgr_acct_user_add_existing": admin_accounts.user_add("alice", ACCOUNT, AssocLimits()),
        "sacctmgr_acct_user_delete_unknown": admin_accounts.user_remove("alice", ACCOUNT),
        "sacctmgr_acct_delete_unknown": admin_accounts.account_delete(ACCOUNT),
    }
    for name, command in cases.items():
        with pytest.raises(SlurmInvalidRequest):
            run(release, name, command)
    modify = admin_accounts.user_modify("alice", ACCOUNT, AssocLimits(), AssocLimits(max_jobs=3))
    assert modify is not None
    with pytest.raises(SlurmInvalidRequest):
        run(release, "sacctmgr_acct_user_modify_unknown", modify)


def test_reports_must_name_what_changed() -> None:
    args = admin_accounts.user_remove("bob", "physics").args
    sacctmgr_output.check_done(
        args, " Deleting user associations...\n  C = hpcdev     A = physics    U = bob\n"
    )
    with pytest.raises(SlurmOutputUnreadable):
        sacctmgr_output.check_done(
            args, " Deleting user associations...\n  C = hpcdev     A = physics    U = alice\n"
        )
    # 22.05 cuts names to its columns (users 9, accounts 10 characters).
    long = admin_accounts.user_add("alexandria", "t_ac_80aab035", AssocLimits()).args
    sacctmgr_output.check_done(long, " Associations =\n  U = alexandri A = t_ac_80aab C = hpcdev\n")
    with pytest.raises(SlurmOutputUnreadable):
        sacctmgr_output.check_done(long, " Associations =\n  U = alexandri A = t_ac_8 C = h\n")
    modify = admin_accounts.user_modify("bob", "physics", AssocLimits(), AssocLimits(max_jobs=1))
    assert modify is not None
    with pytest.raises(SlurmInvalidRequest):  # 26.05 prints a header, then "Nothing modified"
        sacctmgr_output.check_done(
            modify.args, " Modified user associations...\n  Nothing modified\n"
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "-i"},
        {"name": "a b"},
        {"description": "x=y"},
        {"organization": "o'rg"},
        {"parent": "-where"},
    ],
)
def test_no_input_becomes_an_option_or_clause(bad: dict[str, str]) -> None:
    values = {"name": "ok", "parent": "root", "description": "d", "organization": "o", **bad}
    with pytest.raises(ValueError):
        admin_accounts.account_create(
            values["name"],
            values["parent"],
            values["description"],
            values["organization"],
            AssocLimits(),
        )
    with pytest.raises(ValueError):
        admin_accounts.user_add("-bob", "physics", AssocLimits())


def test_limits_are_checked_and_cleared() -> None:
    with pytest.raises(ValueError):
        AssocLimits(max_jobs=-2)
    with pytest.raises(ValueError):
        AssocLimits(max_tres_per_job="cpu=4,gpu;rm=1")
    with pytest.raises(ValueError):
        AssocLimits(fairshare="half")
    before = AssocLimits(max_tres_per_job={"cpu": 2, "mem": 1024}, default_qos="normal")
    command = admin_accounts.user_modify("bob", "physics", before, AssocLimits())
    assert command is not None
    assert command.args[-2:] == ("MaxTRES=cpu=-1,mem=-1", "DefaultQOS=-1")
    assert admin_accounts.user_modify("bob", "physics", before, before) is None
