"""The submit form's account and QoS lists (``services/submit_choices.py``).

The adapter here is a test stand-in answering the three questions the service asks
(associations, slurmdbd's PrivateData, roles) with rows shaped like the dev cluster's
``sacctmgr show associations``.
"""

from __future__ import annotations

from typing import Any, cast

from hpcportal.errors import SlurmUnreachable
from hpcportal.services.identity import Principal
from hpcportal.services.submit_choices import AccountChoice, submit_choices
from hpcportal.slurm.adapter import SlurmAdapter
from hpcportal.slurm.models import Association, PrivateData, SlurmRoles


def assoc(account: str, user: str | None, qos: str = "normal", default: str | None = None,
          parent: str | None = "root") -> Association:  # fmt: skip
    return Association(cluster="hpcdev", account=account, user=user, parent=parent,
                       qos=qos.split(","), default_qos=default)  # fmt: skip


ROWS = [
    assoc("root", None, parent=None),
    assoc("research", None),
    assoc("research", "alice", "high,normal", "normal"),
    assoc("research", "bob", "high,normal", "normal"),
    assoc("physics", None),
    assoc("physics", "alice", "normal", "normal"),
    assoc("physics", "dave", "high,normal", "normal"),
]


class StandInAdapter:
    def __init__(self, private: frozenset[str] = frozenset(), fail: bool = False) -> None:
        self.private = private
        self.fail = fail
        self.asked: list[str] = []

    def associations(self) -> list[Association]:
        self.asked.append("associations")
        if self.fail:
            raise SlurmUnreachable("slurmdbd is down")
        return list(ROWS)

    def database_private_data(self) -> PrivateData:
        self.asked.append("private_data")
        return PrivateData(flags=self.private, slurm_user="slurm")

    def roles(self) -> SlurmRoles:
        self.asked.append("roles")
        return SlurmRoles(coordinators={"bob": frozenset({"physics"})})


def who(name: str) -> Principal:
    return Principal(name, 1000, 1000, (), "user")


def choices(adapter: Any, name: str) -> Any:
    return submit_choices(cast(SlurmAdapter, adapter), who(name))


def test_only_the_persons_own_associations_with_their_qos() -> None:
    found = choices(StandInAdapter(), "alice")
    assert found.available
    assert found.accounts == [
        AccountChoice(name="physics", qos=["normal"], default_qos="normal"),
        AccountChoice(name="research", qos=["high", "normal"], default_qos="normal"),
    ]
    assert found.qos == ["high", "normal"]


def test_a_coordinator_is_not_offered_accounts_they_do_not_belong_to() -> None:
    # bob coordinates physics: under PrivateData=users he sees its rows, but he
    # cannot charge it.
    adapter = StandInAdapter(private=frozenset({"users"}))
    found = choices(adapter, "bob")
    assert [a.name for a in found.accounts] == ["research"]
    assert "private_data" in adapter.asked and "roles" in adapter.asked


def test_someone_without_associations_gets_empty_lists() -> None:
    found = choices(StandInAdapter(private=frozenset({"users"})), "mallory")
    assert found.accounts == [] and found.qos == [] and found.available


def test_slurm_down_means_free_text_not_an_error() -> None:
    found = choices(StandInAdapter(fail=True), "alice")
    assert not found.available and found.accounts == []
