"""sdiag as 22.05, 24.11 and 26.05 print it (recorded by record-sdiag.sh), decoded strictly.

22.05 has only text; 24.11 and 26.05 are read as JSON in every data_parser they offer.
Each recording was made with one job running and one pending behind it in ``viz``,
after a backfill cycle, so the means are printed and required.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from hpcportal.slurm import sdiag

FIXTURES = Path(__file__).parents[1] / "fixtures" / "slurm"
JSON_RECORDINGS = sorted(FIXTURES.glob("*/sdiag.v*.json"))


def fmt_of(path: Path) -> str:
    return path.name.removeprefix("sdiag.").removesuffix(".json")


def test_22_05_text_reads_every_figure() -> None:
    stats = sdiag.parse_text((FIXTURES / "22.05" / "sdiag.txt").read_bytes())
    assert stats.sampled_at == datetime.fromtimestamp(1796278348, UTC)
    assert stats.data_since == datetime.fromtimestamp(1796278195, UTC)
    assert (stats.server_thread_count, stats.agent_queue_size, stats.dbd_agent_queue_size) == (
        3,
        0,
        0,
    )
    assert (stats.jobs_submitted, stats.jobs_started, stats.jobs_pending, stats.jobs_running) == (
        2,
        1,
        1,
        1,
    )
    main = (
        stats.schedule_cycle_last,
        stats.schedule_cycle_max,
        stats.schedule_cycle_count,
        stats.schedule_cycle_mean,
        stats.schedule_cycle_mean_depth,
        stats.schedule_queue_length,
    )
    assert main == (112, 2703, 9, 342, 0, 1)
    backfill = (
        stats.backfill_cycle_last,
        stats.backfill_cycle_max,
        stats.backfill_cycle_count,
        stats.backfill_cycle_mean,
        stats.backfill_last_depth,
        stats.backfill_depth_mean,
        stats.backfill_queue_length,
    )
    assert backfill == (96, 163, 2, 129, 1, 1, 1)
    partition_info = next(
        r for r in stats.rpcs_by_type if r.message_type == "REQUEST_PARTITION_INFO"
    )
    assert (partition_info.type_id, partition_info.count, partition_info.average_us) == (
        2009,
        126,
        376,
    )
    assert partition_info.total_us == 47418
    assert {"root", "alice", "bob", "carol"} <= {u.user for u in stats.rpcs_by_user}


@pytest.mark.parametrize("path", JSON_RECORDINGS, ids=lambda p: f"{p.parent.name}-{fmt_of(p)}")
def test_json_formats_read_as_recorded(path: Path) -> None:
    raw = path.read_bytes()
    document = json.loads(raw)["statistics"]
    stats = sdiag.parse_json(raw, fmt_of(path))
    assert stats == sdiag.parse_json(raw, None)  # the meta block names the same format
    assert stats.sampled_at == datetime.fromtimestamp(document["req_time"]["number"], UTC)
    assert stats.jobs_pending == document["jobs_pending"] == 1
    assert stats.jobs_running == document["jobs_running"] == 1
    assert stats.schedule_cycle_count == document["schedule_cycle_total"] > 0
    assert stats.schedule_cycle_mean == document["schedule_cycle_mean"]
    assert stats.backfill_cycle_count == document["bf_cycle_counter"] > 0
    assert stats.backfill_cycle_mean == document["bf_cycle_mean"]
    assert stats.backfill_cycle_max == document.get("bf_cycle_max")  # not in v0.0.40
    assert stats.backfill_last_depth == document["bf_last_depth"]
    by_type = {r.message_type: r for r in stats.rpcs_by_type}
    for row in document["rpcs_by_message_type"]:
        average = row["average_time"]
        expected = average if isinstance(average, int) else average["number"]
        assert by_type[row["message_type"]].average_us == expected
        assert by_type[row["message_type"]].total_us == row["total_time"]
    assert [u.user for u in stats.rpcs_by_user] == [u["user"] for u in document["rpcs_by_user"]]


@pytest.mark.parametrize("release", ["24.11", "26.05"])
def test_json_and_text_agree_on_the_same_moment(release: str) -> None:
    """The text was printed a moment before the JSON: cycle figures are the same."""
    text = sdiag.parse_text((FIXTURES / release / "sdiag.txt").read_bytes())
    newest = max((FIXTURES / release).glob("sdiag.v*.json"))
    js = sdiag.parse_json(newest.read_bytes(), fmt_of(newest))
    for name in (
        "schedule_cycle_max",
        "backfill_cycle_count",
        "backfill_cycle_mean",
        "backfill_cycle_max",
        "backfill_last_depth",
        "jobs_pending",
        "jobs_running",
    ):
        assert getattr(text, name) == getattr(js, name), name


def test_text_means_are_required_once_a_cycle_ran() -> None:
    raw = (FIXTURES / "22.05" / "sdiag.txt").read_text()
    assert "\tMean cycle: 129\n" in raw
    with pytest.raises(sdiag.Unreadable, match="Mean cycle"):
        sdiag.parse_text(raw.replace("\tMean cycle: 129\n", "").encode())


def test_text_without_cycles_has_no_means() -> None:
    raw = (FIXTURES / "22.05" / "sdiag.txt").read_text()
    start, end = raw.index("\tTotal cycles: 2"), raw.index("\tLast depth cycle:")
    before = (
        raw[:start]
        + "\tTotal cycles: 0\n\tLast cycle when: N/A\n"
        + ("\tLast cycle: 0\n\tMax cycle:  0\n")
    )
    trimmed = before + raw[end:].replace("\tDepth Mean: 1\n", "")
    stats = sdiag.parse_text(trimmed.encode())
    assert stats.backfill_cycle_count == 0
    assert stats.backfill_cycle_mean is None and stats.backfill_depth_mean is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("Server thread count:  3", "Server threads:  3", "Server thread count"),
        ("Agent queue size:     0", "Agent queue size:     many", "not a count"),
        ("Backfilling stats", "Backfill statistics", "Backfill statistics"),
        ("( 2009) count:126", "( 2009) calls:126", "RPC line"),
    ],
)
def test_text_refuses_a_changed_line(old: str, new: str, message: str) -> None:
    raw = (FIXTURES / "22.05" / "sdiag.txt").read_text()
    assert old in raw
    with pytest.raises(sdiag.Unreadable, match=message):
        sdiag.parse_text(raw.replace(old, new).encode())


def test_json_refuses_a_renamed_field_and_another_format() -> None:
    path = FIXTURES / "26.05" / "sdiag.v0.0.45.json"
    raw = path.read_bytes()
    with pytest.raises(msgspec.ValidationError, match="bf_cycle_mean"):
        sdiag.parse_json(raw.replace(b'"bf_cycle_mean"', b'"bf_cycle_average"'), "v0.0.45")
    with pytest.raises(sdiag.Unreadable, match=r"asked sdiag for JSON format v0\.0\.44"):
        sdiag.parse_json(raw, "v0.0.44")
    with pytest.raises(sdiag.Unreadable, match=r"not v0\.0\.38"):
        sdiag.parse_json(raw, "v0.0.38")
    # v0.0.41 on: an average is a {set, infinite, number} object, never a bare number
    newer = FIXTURES / "24.11" / "sdiag.v0.0.42.json"
    document = json.loads(newer.read_bytes())
    document["statistics"]["rpcs_by_user"][0]["average_time"] = 5
    with pytest.raises(msgspec.ValidationError, match="average_time"):
        sdiag.parse_json(json.dumps(document).encode(), "v0.0.42")
