"""``sacctmgr show event`` of each release, recorded from the dev clusters, read into
``NodeEvent``s: a drain with a reason holding "|", a down, and an open drain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hpcportal.slurm import parse
from tests.unit.slurm_fixtures import recorded

RELEASES = ("22.05", "24.11", "26.05")
REASON = "report fixture: fan | noisy"


@pytest.mark.parametrize("release", RELEASES)
def test_closed_drain_and_down_of_node004(release: str) -> None:
    events = [e for e in parse.parse_node_events(recorded(f"{release}/sacctmgr_events.txt"))
              if e.node == "node004"]  # fmt: skip
    assert events, release
    drains = [e for e in events if e.drained]
    downs = [e for e in events if not e.drained]
    assert drains and downs
    assert {e.reason for e in drains} == {REASON}
    assert {e.reason for e in downs} == {"report fixture: down"}
    assert {e.state for e in downs} == {"DOWN"}
    assert all(e.user == "root" for e in events)
    for e in events:
        assert e.end is not None and e.start <= e.end
        assert e.start.tzinfo is UTC and e.start.date() == datetime(2026, 12, 3).date()
    assert [e.start for e in events] == sorted(e.start for e in events)


@pytest.mark.parametrize("release", RELEASES)
def test_a_drain_still_in_force_has_no_end(release: str) -> None:
    events = parse.parse_node_events(recorded(f"{release}/sacctmgr_events_open.txt"))
    last = events[-1]
    assert (last.node, last.drained, last.end, last.reason) == ("node004", True, None, REASON)
    assert all(e.end is not None for e in events[:-1])


def test_22_05_names_the_person_who_drained() -> None:
    events = parse.parse_node_events(recorded("22.05/sacctmgr_events.txt"))
    carol = [e for e in events if e.node == "node003"]
    assert carol and {e.user for e in carol} == {"carol"}


def test_cluster_rows_and_an_empty_answer() -> None:
    raw = b"NodeName|TimeStart|TimeEnd|State|User|Reason\n|2026-12-03T10:10:07|Unknown||| \n"
    assert parse.parse_node_events(raw) == []
    assert parse.parse_node_events(b"") == []


def test_reason_not_last_is_refused() -> None:
    with pytest.raises(ValueError, match="Reason must be the last"):
        parse.parse_node_events(b"NodeName|Reason|TimeStart\nn1|x|2026-12-03T10:10:07\n")
