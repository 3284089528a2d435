"""The Slurm job of a session: its request and its idempotency key (pure, no I/O).

The launch and the tracker's confirmation (``confirm``) both build the request from
the same inputs, so a job submitted again for a row whose launch Slurm did not
confirm carries the very same idempotency hash.
"""

from __future__ import annotations

from hpcportal.db.models import InteractiveSession
from hpcportal.services.submit_models import JobRequest


def job_request(app_id: str, options: dict[str, int | str], script: str, folder: str) -> JobRequest:
    """The resources as sbatch options; output and working folder in the session folder.

    Only the app's id, the stored options and the written script go in, so the tracker
    rebuilds the very same request (same idempotency hash) from the row and ``job.sh``.
    """
    gpus = options.get("gpus")
    memory = options.get("memory_gb")
    hours = options.get("hours")
    cpus = options.get("cpus")
    return JobRequest(
        script=script,
        name=f"hpcportal-{app_id}",
        partition=str(options["partition"]) if "partition" in options else None,
        cpus_per_task=int(cpus) if cpus is not None else None,
        memory=f"{memory}G" if memory is not None else None,
        gpus=int(gpus) if gpus else None,
        time_limit=f"{int(hours)}:00:00" if hours is not None else None,
        work_dir=folder,
        output=f"{folder}/output.log",
    )


def session_key(session_id: str) -> str:
    """The idempotency key of the session's job (its comment carries its marker)."""
    return f"session:{session_id}"


def waiting_for_slurm(row: InteractiveSession) -> bool:
    """Launched, but Slurm has not confirmed a job yet: one may exist all the same."""
    return row.state == "creating" and row.job_id is None
