"""How well a finished job used what it asked for: CPU and memory, from accounting."""

from __future__ import annotations

from pydantic import BaseModel

from hpcportal.errors import NotFound
from hpcportal.services.jobs import validate_job_id
from hpcportal.services.visibility import EVERYONE, Visibility
from hpcportal.slurm.actions import JobEfficiencyRecord, SlurmActions


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


def efficiency(slurm: SlurmActions, job_id: str, vis: Visibility = EVERYONE) -> Efficiency:
    """CPU used / (elapsed x CPUs) and peak memory / requested, from accounting.

    A job ``vis`` may not see (slurmdbd's ``PrivateData=jobs``) is not found.
    """
    validate_job_id(job_id)
    record = slurm.efficiency_record(job_id)
    if record is None or not vis.sees_job_of(record.user, record.account or None):
        raise NotFound(f"No job {job_id} in accounting.")
    return ratios(record)


def ratios(record: JobEfficiencyRecord) -> Efficiency:
    """The record's use against its request; None where a side is unknown or zero."""
    elapsed, cpus, cpu_time = record.elapsed_seconds, record.cpus, record.cpu_time_seconds
    requested, peak = record.memory_requested_mb, record.memory_max_used_mb
    return Efficiency(
        job_id=record.job_id,
        state=record.state,
        elapsed_seconds=elapsed,
        cpus=cpus,
        cpu_time_seconds=round(cpu_time, 3),
        cpu_efficiency=round(cpu_time / (elapsed * cpus), 4) if elapsed and cpus else None,
        memory_requested_mb=requested,
        memory_max_used_mb=round(peak, 3) if peak is not None else None,
        memory_efficiency=round(peak / requested, 4) if peak is not None and requested else None,
    )
