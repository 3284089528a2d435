"""Reports: generating, storing and scheduling them, rendering PDFs, and report kinds.

How often replicas look for queued reports and the leader runs schedules, how long
reports are kept and how large they may be, the PDF font, and the efficiency report's
thresholds. Used by ``services/reports/`` (``generation.py``, ``schedules.py``,
``render/``, ``kinds/efficiency.py``). The usage store's ingester, which feeds the
usage reports, is configured in ``operations.py`` with the leader's other periodic work.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class ReportSettings(BaseModel):
    """Report generation, rendering and kinds."""

    # Reports: generation, storage and schedules (issue 14.4; services/reports/generation)
    report_retention_days: float = Field(
        default=30.0, gt=0, le=3650,
        description="Generated reports are deleted by the leader this long after they "
        "were asked for.",
    )  # fmt: skip
    report_worker_seconds: float = Field(
        default=2.0, gt=0, le=3600,
        description="Every replica looks for queued reports to generate this often.",
    )  # fmt: skip
    report_schedule_check_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="The leader runs due report schedules and deletes expired reports "
        "this often.",
    )  # fmt: skip
    report_stale_minutes: float = Field(
        default=30.0, gt=0, le=1440,
        description="A report still running this long after a replica claimed it (the "
        "replica died) is taken again by another.",
    )  # fmt: skip
    report_max_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0,
        description="Largest rendered report stored; a larger one fails with a message.",
    )  # fmt: skip

    # Reports: rendering (issue 14.3; services/reports/render)
    reports_font_path: Path = Field(
        default=Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf"),
        description="TrueType font of PDF reports, embedded as a subset; it must cover "
        "Korean (Debian's fonts-nanum). A NanumGothicBold.ttf beside it is used for "
        "headings when present.",
    )

    # Reports: efficiency, system and user-activity kinds (issue 14.2;
    # services/reports/kinds/efficiency.py, system.py, user_activity.py)
    report_short_job_minutes: float = Field(
        default=10.0, gt=0, le=1440,
        description="The efficiency report counts a started job that ran less than this "
        "as a short job.",
    )  # fmt: skip
    report_gpu_prometheus_jobs: int = Field(
        default=200, ge=0, le=10000,
        description="With Prometheus configured, the efficiency report asks it for the "
        "mean GPU utilisation of at most this many of the period's newest GPU jobs (one "
        "query each) to find idle GPUs the idle-GPU check did not flag.",
    )  # fmt: skip
