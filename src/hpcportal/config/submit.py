"""Job submission: uploads, the per-submission folders, job output and Apptainer.

Where a user's uploaded inputs and submitted scripts go, upload and output sizes, and
the Apptainer images and options jobs run with. Used by ``services/submit.py``,
``services/uploads.py``, ``services/apptainer.py`` and the job output readers
(``api/job_actions.py``, ``services/live/output_follow.py``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class SubmitSettings(BaseModel):
    """What a job submission may bring and where its files go."""

    # Job submission
    upload_root: str = Field(
        default="{home}/hpcportal/uploads",
        description="Where uploaded input files go, per user; {home} and {user} are replaced.",
    )
    submission_root: str = Field(
        default="{home}/hpcportal/jobs",
        description="Where per-submission files (the script run inside Apptainer) go.",
    )
    upload_max_bytes: int = Field(default=1024**3, gt=0, description="Largest uploaded file.")
    upload_max_files: int = Field(default=20, gt=0, description="Files per upload request.")
    output_chunk_bytes: int = Field(
        default=256 * 1024, gt=0, description="Most bytes of job output returned per request."
    )
    apptainer_image_dirs: list[Path] = Field(
        default_factory=list, description="Directories scanned for .sif images."
    )
    apptainer_command: str = Field(
        default="apptainer", description="The apptainer program jobs run (name or path)."
    )
    apptainer_binds: list[str] = Field(
        default_factory=list, description="--bind values added to every Apptainer job."
    )
