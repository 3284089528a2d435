"""Who the run-as boundary never acts as: slurm.conf's daemon accounts and the deny list,
read from slurm.conf, fixed in the helper's text and spelled in the sudoers rule."""

from __future__ import annotations

import logging
import pwd
import subprocess
from pathlib import Path

import pytest

from hpcportal.runas import RunAs, RunAsRefused, check_target_user
from hpcportal.runas.assemble import helper_source
from hpcportal.runas.denied import (
    DenyList,
    DenyListError,
    deny_list,
    fix_deny_list,
    installed_deny_list,
    slurm_daemon_users,
)
from hpcportal.runas.install import runas_list, sudoers_rule


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_both_keys_are_read_whatever_their_case_spacing_and_quotes(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "slurm.conf",
        "ClusterName=c\n"
        "slurmuser = slurm   # the controller's account\n"
        'SlurmdUser="slurmd-x" SlurmctldPort=6817\n'
        "#SlurmUser=commented\n",
    )
    assert slurm_daemon_users(conf) == {"root", "slurm", "slurmd-x"}


def test_absent_keys_mean_root(tmp_path: Path) -> None:
    conf = write(tmp_path / "slurm.conf", "ClusterName=c\nNodeName=n1 CPUs=2\n")
    assert slurm_daemon_users(conf) == {"root"}


def test_include_files_are_followed_relative_and_by_pattern(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "a.conf", "SlurmUser=alpha\n")
    write(tmp_path / "conf.d" / "b.conf", "SlurmdUser=beta\n")
    write(tmp_path / "daemons.conf", "include conf.d/*.conf\n")
    conf = write(tmp_path / "slurm.conf", "ClusterName=c\nInclude daemons.conf\n")
    assert slurm_daemon_users(conf) == {"root", "alpha", "beta"}


def test_every_value_of_a_repeated_key_is_refused(tmp_path: Path) -> None:
    """Whichever one Slurm keeps, both are refused."""
    conf = write(tmp_path / "slurm.conf", "SlurmUser=first\nSlurmUser=second\n")
    assert slurm_daemon_users(conf) == {"root", "first", "second"}


def test_a_missing_slurm_conf_or_include_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DenyListError, match="cannot read"):
        slurm_daemon_users(tmp_path / "absent.conf")
    conf = write(tmp_path / "slurm.conf", "Include missing.conf\n")
    with pytest.raises(DenyListError, match=r"missing\.conf"):
        slurm_daemon_users(conf)


def test_deny_list_has_names_and_uids(tmp_path: Path) -> None:
    conf = write(tmp_path / "slurm.conf", "SlurmUser=slurm\nSlurmdUser=0\n")
    deny = deny_list(["dave", "not-here-yet"], conf)
    assert deny.names == {"root", "slurm", "dave", "not-here-yet"}
    assert deny.uids == {0, pwd.getpwnam("slurm").pw_uid, pwd.getpwnam("dave").pw_uid}
    assert deny.refuses(pwd.getpwnam("slurm"))
    assert not deny.refuses(pwd.getpwnam("alice"))


def test_a_name_that_is_no_account_name_is_refused() -> None:
    with pytest.raises(DenyListError):
        deny_list(["bob, ALL"], None)


def test_the_helper_text_carries_the_list_and_it_reads_back(tmp_path: Path) -> None:
    deny = DenyList(frozenset({"root", "slurm"}), frozenset({0, 64030}))
    text = fix_deny_list(helper_source(), deny)
    assert "DENY_USERS: frozenset[str] = frozenset({'root', 'slurm'})" in text
    assert "DENY_UIDS: frozenset[int] = frozenset({0, 64030})" in text
    compile(text, "helper", "exec")
    installed = write(tmp_path / "helper", text)
    assert installed_deny_list(installed) == frozenset({"root", "slurm"})
    assert installed_deny_list(write(tmp_path / "plain", helper_source())) == frozenset()
    assert installed_deny_list(tmp_path / "absent") is None


def test_sudoers_rule_names_group_and_denied_accounts_and_visudo_accepts_it(
    tmp_path: Path,
) -> None:
    deny = DenyList(frozenset({"root", "slurm", "first.last"}), frozenset({0, 64030}))
    assert runas_list("hpc-users", deny) == "%hpc-users, !root, !first.last, !slurm, !#64030"
    assert runas_list(None, DenyList()) == "ALL, !root"
    rule = sudoers_rule("hpcportal", Path("/usr/local/libexec/x"), group="research", deny=deny)
    assert "hpcportal ALL=(%research, !root, !first.last, !slurm, !#64030) NOPASSWD:" in rule
    checked = subprocess.run(["visudo", "-cf", "-"], input=rule, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_the_portal_refuses_denied_and_outside_users_with_a_reason() -> None:
    deny = DenyList(frozenset({"slurm", "dave"}), frozenset())
    with pytest.raises(RunAsRefused, match="Slurm daemon account or on the deny list"):
        check_target_user("dave", 1000, deny)
    with pytest.raises(RunAsRefused, match="not in the group 'research'"):
        check_target_user("carol", 1000, DenyList(), "research")
    with pytest.raises(RunAsRefused, match="not in the group"):
        check_target_user("alice", 1000, DenyList(), "no-such-group-here")
    assert check_target_user("alice", 1000, deny, "research").pw_name == "alice"


def test_a_denied_uid_refuses_an_alias_name() -> None:
    """An account sharing a denied UID is refused even under another name."""
    alice = pwd.getpwnam("alice")
    with pytest.raises(RunAsRefused):
        check_target_user("alice", 1000, DenyList(frozenset(), frozenset({alice.pw_uid})))


def test_a_helper_older_than_the_deny_list_refuses_no_one_by_name(tmp_path: Path) -> None:
    old = write(tmp_path / "old", "MIN_UID = 1000\nSLURM_PATH = ''\n")
    assert installed_deny_list(old) == frozenset()


def test_the_portal_warns_when_the_installed_helper_misses_a_denied_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = write(tmp_path / "slurm.conf", "SlurmUser=slurm\n")
    helper = write(tmp_path / "helper", fix_deny_list(helper_source(), deny_list([], None)))
    with caplog.at_level(logging.WARNING, logger="hpcportal.runas.boundary"):
        RunAs(method="sudo", helper=helper, slurm_conf=conf, deny_users=["dave"])
    assert "does not refuse dave, slurm" in caplog.text
    caplog.clear()
    helper.write_text(fix_deny_list(helper_source(), deny_list(["dave"], conf)))
    with caplog.at_level(logging.WARNING, logger="hpcportal.runas.boundary"):
        RunAs(method="sudo", helper=helper, slurm_conf=conf, deny_users=["dave"])
    assert "does not refuse" not in caplog.text
