"""What a job submission says and what it answers; shared by the API, templates and CLI.

Form fields become sbatch options in argv (``services.submit``), never text spliced
into the script. Every field is validated here, so a bad value is a 422 with a
message, before anything runs.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpcportal.limits import refuse_control

# re.ASCII: ``\d`` alone also takes other scripts' digits ("١٢٣"), which Slurm does not.
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^UNLIMITED$|^INFINITE$", re.ASCII)
_MEMORY = re.compile(r"^\d+[KMGT]?$", re.ASCII)
_ARRAY = re.compile(r"^\d+(-\d+)?(:\d+)?(,\d+(-\d+)?(:\d+)?)*(%\d+)?$", re.ASCII)
_DEPENDENCY = re.compile(
    r"^(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer|singleton)"
    r"(:\d+(_\d+)?(\+\d+)?)*([,?](after|afterany|afterok|afternotok|aftercorr|singleton)"
    r"(:\d+(_\d+)?(\+\d+)?)*)*$",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SLURM_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+$")
MailType = Literal["NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "TIME_LIMIT", "TIME_LIMIT_80"]
MAX_SCRIPT_BYTES = 1024 * 1024


class JobRequest(BaseModel):
    """A job to submit: a script plus optional form fields (sbatch options)."""

    model_config = ConfigDict(extra="forbid")

    script: str = Field(description="The batch script; may carry its own #SBATCH lines.")
    name: str | None = Field(default=None, description="--job-name")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int | None = Field(default=None, ge=1, le=100000)
    ntasks: int | None = Field(default=None, ge=1, le=10_000_000)
    cpus_per_task: int | None = Field(default=None, ge=1, le=100000)
    memory: str | None = Field(default=None, description="--mem per node, e.g. 4G or 500M")
    gpus: int | None = Field(default=None, ge=0, le=1024, description="--gpus")
    time_limit: str | None = Field(default=None, description="--time, e.g. 30, 1:00:00, 2-00")
    array: str | None = Field(default=None, description="--array, e.g. 0-9%2")
    dependency: str | None = Field(default=None, description="--dependency, e.g. afterok:123")
    work_dir: str | None = Field(default=None, description="--chdir; default the home directory")
    output: str | None = Field(default=None, description="--output path (may use %j, %A, %a)")
    error: str | None = Field(default=None, description="--error path")
    environment: dict[str, str] = Field(
        default_factory=dict, description="Variables for the job, and nothing of the portal's"
    )
    mail_type: list[MailType] = []
    mail_user: str | None = None
    apptainer_image: str | None = Field(default=None, description="Image id from the catalog")
    input_files: list[str] = Field(
        default_factory=list, description="Upload ids (from POST /uploads) given to the job"
    )

    @field_validator("script")
    @classmethod
    def _script(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the script is empty")
        if len(value.encode()) > MAX_SCRIPT_BYTES:
            raise ValueError(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
        if "\x00" in value:
            raise ValueError("the script contains a NUL byte")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        # Any printable text is safe: it travels as one argv element, never through a shell.
        if value is not None and (_CONTROL.search(value) or not 0 < len(value) <= 200):
            raise ValueError("give 1 to 200 printable characters (no newlines)")
        return value

    @field_validator("partition", "account", "qos")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is not None and not _SLURM_WORD.fullmatch(value):
            raise ValueError("use letters, digits and _.- only")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.fullmatch(value.upper()):
            raise ValueError("give a number with an optional unit K, M, G or T, like 4G")
        return value.upper() if value else value

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not _TIME.fullmatch(value):
            raise ValueError("use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
        return value

    @field_validator("array")
    @classmethod
    def _array(cls, value: str | None) -> str | None:
        if value is not None and not _ARRAY.fullmatch(value):
            raise ValueError("use indexes like 0-9, 1,3,5, 0-99:2 or 0-9%2")
        return value

    @field_validator("dependency")
    @classmethod
    def _dependency(cls, value: str | None) -> str | None:
        if value is not None and not _DEPENDENCY.fullmatch(value):
            raise ValueError("use Slurm's form, like afterok:123 or afterany:123:456")
        return value

    @field_validator("work_dir", "output", "error")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("/") or len(value) > 4096:
            raise ValueError("give an absolute path")
        if _CONTROL.search(value):
            raise ValueError("give a path without control characters (NUL, newline, tab...)")
        return value

    @field_validator("apptainer_image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        # Plain ``str`` (not ``limits.Line``): template parameters find settable options by
        # their annotation.
        return None if value is None else refuse_control(value)

    @field_validator("input_files")
    @classmethod
    def _uploads(cls, value: list[str]) -> list[str]:
        return [refuse_control(item) for item in value]

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name, content in value.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid variable name")
            if name.startswith(("SLURM_", "HPCPORTAL_")) or name in ("INPUT",):
                raise ValueError(f"{name} is set by Slurm or the portal")
            if "\x00" in content:
                raise ValueError(f"the value of {name} contains a NUL byte")
        return value

    @field_validator("mail_user")
    @classmethod
    def _mail(cls, value: str | None) -> str | None:
        if value is not None and (not _EMAIL.fullmatch(value) or _CONTROL.search(value)):
            raise ValueError("give one e-mail address")
        return value


class DirectiveConflict(BaseModel):
    """A form field and an #SBATCH line of the script that say different things."""

    option: str
    form_value: str
    script_value: str
    line: int
    message: str


class TestOnlyVerdict(BaseModel):
    """``sbatch --test-only``'s answer: would Slurm accept it, and when could it start."""

    __test__ = False  # not a pytest test class

    accepted: bool
    message: str
    start_estimate: datetime | None = None
    nodes: str | None = None


class SubmitPreview(BaseModel):
    """A dry run: exactly what would be submitted, and Slurm's verdict, without submitting."""

    script: str
    argv: list[str]
    conflicts: list[DirectiveConflict]
    verdict: TestOnlyVerdict


class SubmitResult(BaseModel):
    job_id: int
    script: str
    argv: list[str]
    conflicts: list[DirectiveConflict]
    replayed: bool = Field(
        default=False, description="True when an Idempotency-Key matched an earlier submit"
    )
