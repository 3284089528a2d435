"""How well a finished job used what it asked for: CPU and memory, from accounting."""

from __future__ import annotations

from pydantic import BaseModel

from hpcportal.errors import NotFound
from hpcportal.services.jobs import validate_job_id
from hpcportal.services.visibility import EVERYONE, Visibility
from hpcportal.slurm import parse
from hpcportal.slurm.executor import SlurmExecutor

FIELDS = "JobID,User,Account,State,Elapsed,TotalCPU,AllocCPUS,ReqMem,MaxRSS,NNodes"


class Efficiency(BaseModel):
    job_id: str
    state: str
    elapsed_seconds: int
    cpus: int
    cpu_time_seconds: float
    cpu_efficiency: float | None
    memory_requested_mb: float | None
    memory_max_used_mb: float | None
    memory_efficiency: float | None


def clock_seconds(value: str) -> float:
    """``[D-]HH:MM:SS[.mmm]`` or ``MM:SS.mmm`` (sacct's TotalCPU) -> seconds."""
    if not value:
        return 0.0
    days, _, clock = value.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    hours, minutes, seconds = parts[-3:]
    return (int(days) if days else 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def size_mb(value: str) -> float | None:
    """``"1234K"``, ``"500M"``, ``"4G"``, ``"500Mc"`` (per CPU), ``"4000Mn"`` -> MB."""
    text = value.strip().rstrip("cn")
    if not text:
        return None
    units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024}
    unit = text[-1].upper()
    try:
        if unit in units:
            return float(text[:-1]) * units[unit]
        return float(text) / (1024 * 1024)  # plain bytes
    except ValueError:
        return None


def efficiency(executor: SlurmExecutor, job_id: str, vis: Visibility = EVERYONE) -> Efficiency:
    """CPU used / (elapsed x CPUs) and peak memory / requested, from ``sacct``.

    A job ``vis`` may not see (slurmdbd's ``PrivateData=jobs``) is not found.
    """
    validate_job_id(job_id)
    out = executor.run("sacct", ["-j", job_id, "--parsable2", f"--format={FIELDS}"]).stdout
    rows = parse.parse_table(out)
    job = next((r for r in rows if r.get("JobID") == job_id), None)
    if job is None or not vis.sees_job_of(job.get("User"), job.get("Account") or None):
        raise NotFound(f"No job {job_id} in accounting.")
    steps = [r for r in rows if r.get("JobID", "").startswith(f"{job_id}.")]
    elapsed = int(clock_seconds(job.get("Elapsed", "")))
    cpus = int(job.get("AllocCPUS") or 0)
    cpu_time = clock_seconds(job.get("TotalCPU", ""))
    requested = size_mb(job.get("ReqMem", ""))
    if requested is not None and job.get("ReqMem", "").endswith("c"):
        requested *= max(cpus, 1)
    used = [m for m in (size_mb(s.get("MaxRSS", "")) for s in steps) if m is not None]
    peak = max(used) if used else None
    return Efficiency(
        job_id=job_id,
        state=job.get("State", ""),
        elapsed_seconds=elapsed,
        cpus=cpus,
        cpu_time_seconds=round(cpu_time, 3),
        cpu_efficiency=round(cpu_time / (elapsed * cpus), 4) if elapsed and cpus else None,
        memory_requested_mb=requested,
        memory_max_used_mb=round(peak, 3) if peak is not None else None,
        memory_efficiency=round(peak / requested, 4) if peak is not None and requested else None,
    )
