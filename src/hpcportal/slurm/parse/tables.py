"""``sacctmgr`` and ``sshare`` ``--parsable2`` tables -> QoS, associations, fairshare.

Tables are read by their header line, so a column added by a newer Slurm shifts nothing.
"""

from __future__ import annotations

from hpcportal.slurm.models import QOS, Association, FairshareEntry
from hpcportal.slurm.parse.values import parse_tres, split_list, time_minutes, to_float, to_int


def parse_table(raw: bytes) -> list[dict[str, str]]:
    """A ``--parsable2`` table with its header line -> rows keyed by header."""
    lines = [ln for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split("|")]
    return [dict(zip(header, ln.split("|"), strict=False)) for ln in lines[1:]]


def parse_qos(raw: bytes) -> list[QOS]:
    return [
        QOS(
            name=r["Name"],
            priority=to_int(r.get("Priority")) or 0,
            max_wall_minutes=time_minutes(r.get("MaxWall")),
            max_tres_per_user=parse_tres(r.get("MaxTRESPU")),
            max_jobs_per_user=to_int(r.get("MaxJobsPU")),
            max_submit_per_user=to_int(r.get("MaxSubmitPU")),
            grp_tres=parse_tres(r.get("GrpTRES")),
            preempt=split_list(r.get("Preempt")),
            flags=split_list(r.get("Flags")),
        )
        for r in parse_table(raw)
    ]


def parse_associations(raw: bytes) -> list[Association]:
    return [
        Association(
            cluster=r.get("Cluster", ""),
            account=r.get("Account", ""),
            user=r.get("User") or None,
            parent=r.get("ParentName") or r.get("Par Name") or None,
            share=r.get("Share") or None,
            qos=split_list(r.get("QOS")),
            default_qos=r.get("Def QOS") or None,
            max_jobs=to_int(r.get("MaxJobs")),
            max_submit=to_int(r.get("MaxSubmit")),
            grp_tres=parse_tres(r.get("GrpTRES")),
            max_tres=parse_tres(r.get("MaxTRES")),
            max_wall_minutes=time_minutes(r.get("MaxWall")),
        )
        for r in parse_table(raw)
    ]


def parse_sshare(raw: bytes) -> list[FairshareEntry]:
    return [
        FairshareEntry(
            account=r.get("Account", "").strip(),
            user=(r.get("User") or "").strip() or None,
            raw_shares=to_int(r.get("RawShares")),
            norm_shares=to_float(r.get("NormShares")),
            raw_usage=to_int(r.get("RawUsage")),
            norm_usage=to_float(r.get("NormUsage")),
            effective_usage=to_float(r.get("EffectvUsage")),
            fairshare=to_float(r.get("FairShare")),
            level_fs=to_float(r.get("LevelFS")),
        )
        for r in parse_table(raw)
    ]
