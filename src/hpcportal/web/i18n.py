"""Languages of the web UI: gettext catalogs, negotiation, localized formatting.

English is the source language; Korean comes from ``locale/ko/LC_MESSAGES``. The
language is the ``hpcportal_lang`` cookie when it names one we have, else the best
match of the browser's ``Accept-Language``, else English. Each language has its own
Jinja2 environment with its translations installed (``install_gettext_translations``),
so concurrent requests in different languages never share state.

Strings outside templates are marked with ``N_`` (extracted, translated when shown).
The strings the browser's scripts need travel as a small catalog in each page
(``js_catalog``). Regenerate the catalogs as described in ``docs/ui.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import dates, numbers
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined

WEB_DIR: Final = Path(__file__).resolve().parent
LOCALE_DIR: Final = WEB_DIR / "locale"
TEMPLATE_DIR: Final = WEB_DIR / "templates"
DOMAIN: Final = "messages"
LANGUAGES: Final = ("en", "ko")
DEFAULT_LANGUAGE: Final = "en"
LANG_COOKIE: Final = "hpcportal_lang"
TZ_COOKIE: Final = "hpcportal_tz"
#: Names shown in the language switch, each in its own language (never translated).
LANGUAGE_NAMES: Final = {"en": "English", "ko": "한국어"}

_LANG_RANGE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$|^\*$")
_TZ_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}$")


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


# --- Choosing the language ------------------------------------------------------------


def parse_accept_language(header: str | None) -> list[str]:
    """Language ranges of an ``Accept-Language`` header, best first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")[:20]):
        name, _, params = part.strip().partition(";")
        name = name.strip()
        if not name or not _LANG_RANGE.fullmatch(name):
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, name.lower()))
    return [name for _, _, name in sorted(ranked)]


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if we have it, else the browser's best match, else English."""
    if cookie in LANGUAGES:
        return cookie
    for wanted in parse_accept_language(accept_language):
        if wanted == "*":
            return DEFAULT_LANGUAGE
        primary = wanted.split("-", 1)[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def timezone_from(cookie: str | None) -> tzinfo:
    """The browser's time zone (set by the page's script), else UTC."""
    if cookie and len(cookie) <= 64 and _TZ_NAME.fullmatch(cookie):
        try:
            return ZoneInfo(cookie)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


# --- Catalogs and environments --------------------------------------------------------


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: str) -> NullTranslations:
    """The compiled catalog of a language (English: the identity)."""
    if lang == DEFAULT_LANGUAGE:
        return NullTranslations()
    loaded = Translations.load(str(LOCALE_DIR), [lang], DOMAIN)
    if not isinstance(loaded, Translations):
        raise RuntimeError(f"No compiled catalog for {lang!r} under {LOCALE_DIR}")
    return loaded


def gettext(lang: str, message: str) -> str:
    return str(translations(lang).ugettext(message))


@lru_cache(maxsize=len(LANGUAGES))
def environment(lang: str) -> Environment:
    """The Jinja2 environment of one language: autoescaped, with its gettext installed."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["N_"] = N_
    return env


# --- Formatting -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Formatter:
    """Dates, numbers and durations in one request's language and time zone."""

    lang: str
    tz: tzinfo = UTC

    def dt(self, value: datetime | None, format: str = "medium") -> str:
        if value is None:
            return "—"
        return dates.format_datetime(value, format=format, tzinfo=self.tz, locale=self.lang)

    def day(self, value: date | datetime | None, format: str = "medium") -> str:
        if value is None:
            return "—"
        if isinstance(value, datetime):
            value = value.astimezone(self.tz).date()
        return dates.format_date(value, format=format, locale=self.lang)

    def number(self, value: float | int | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        pattern = None if digits == 0 else "#,##0." + "0" * digits
        return numbers.format_decimal(value, format=pattern, locale=self.lang)

    def percent(self, part: float, whole: float) -> str:
        ratio = part / whole if whole else 0.0
        return numbers.format_percent(ratio, locale=self.lang)

    def duration(self, value: timedelta | float | int | None) -> str:
        """A duration in words, to the nearest large unit ("3 hours", "3시간")."""
        if value is None:
            return "—"
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
        return dates.format_timedelta(
            timedelta(seconds=seconds), threshold=1.5, format="short", locale=self.lang
        )

    def minutes(self, value: int | None) -> str:
        """A time limit given in minutes ("—" for unlimited)."""
        return "—" if value is None else self.duration(value * 60)

    def ago(self, value: datetime | None, now: datetime | None = None) -> str:
        """How long ago ("5 minutes ago", "5분 전")."""
        if value is None:
            return "—"
        delta = value - (now or datetime.now(UTC))
        return dates.format_timedelta(delta, add_direction=True, locale=self.lang)

    def iso(self, value: datetime | None) -> str:
        return value.astimezone(UTC).isoformat() if value else ""


# --- Labels used outside templates ------------------------------------------------------

JOB_STATUS_LABELS: Final = {
    "queued": N_("Queued"),
    "queued_held": N_("Held"),
    "running": N_("Running"),
    "suspended": N_("Suspended"),
    "completing": N_("Completing"),
    "completed": N_("Completed"),
    "failed": N_("Failed"),
    "cancelled": N_("Cancelled"),
    "timeout": N_("Timed out"),
    "undetermined": N_("Unknown"),
}
NODE_STATUS_LABELS: Final = {
    "idle": N_("Idle"),
    "mixed": N_("Mixed"),
    "allocated": N_("Allocated"),
    "completing": N_("Completing"),
    "draining": N_("Draining"),
    "drained": N_("Drained"),
    "down": N_("Down"),
    "reserved": N_("Reserved"),
    "maintenance": N_("Maintenance"),
    "future": N_("Future"),
    "undetermined": N_("Unknown"),
}
WIDGET_TITLES: Final = {
    "cluster_summary": N_("Cluster summary"),
    "my_jobs": N_("My jobs"),
    "partition_load": N_("Partition load"),
    "node_heatmap": N_("Node heat map"),
    "notifications": N_("Notifications"),
    "quick_submit": N_("Quick submit"),
    "storage": N_("Storage usage"),
}
PRESET_TITLES: Final = {
    "default": N_("Everything at a glance"),
    "minimal": N_("Just my jobs"),
}
#: Session states as the pages name them; "starting" is a running job whose app is not
#: answering yet (``running`` without ``ready``).
SESSION_STATE_LABELS: Final = {
    "creating": N_("Submitting"),
    "pending": N_("Waiting in the queue"),
    "starting": N_("Starting"),
    "running": N_("Running"),
    "completed": N_("Ended"),
    "failed": N_("Failed"),
    "cancelled": N_("Deleted"),
}
#: The texts of the apps shipped in ``hpcportal/apps`` (names, descriptions, categories,
#: form labels), so their cards are in the page's language; a site's own apps show
#: their texts as written.
SHIPPED_APP_TEXTS: Final = (
    N_("Desktop"),
    N_("Desktops"),
    N_(
        "A Linux desktop (the JWM window manager with a terminal) on a visualisation node, "
        "in your browser."
    ),
    N_("JupyterLab"),
    N_("Notebooks"),
    N_(
        "JupyterLab in your browser, running on a compute node: notebooks, a terminal and a "
        "file browser in your home directory."
    ),
    N_("Text Editor"),
    N_("Editors"),
    N_(
        "Mousepad, a graphical text editor, on a visualisation node in your browser: edit "
        "files in your home directory with the mouse and menus."
    ),
    N_("Partition"),
    N_("Hours"),
    N_("CPU cores"),
    N_("Memory (GB)"),
    N_("GPUs"),
    N_("Screen size"),
)
PARAMETER_TYPE_LABELS: Final = {
    "string": N_("Text"),
    "integer": N_("Whole number"),
    "number": N_("Number"),
    "choice": N_("Choice"),
    "boolean": N_("Yes/no"),
    "file": N_("File"),
}

#: Strings the browser's scripts show, by key; translated into each page (``js_catalog``).
JS_MESSAGES: Final = {
    "live.connected": N_("Live updates on"),
    "live.polling": N_("Live updates interrupted; refreshing every 10 seconds"),
    "live.reconnecting": N_("Reconnecting…"),
    "session.expired": N_("Your session has expired; log in again."),
    "error.generic": N_("Something went wrong. Try again."),
    "error.network": N_("The portal cannot be reached. Check your connection."),
    "action.confirm.cancel": N_("Cancel job %(id)s?"),
    "action.confirm.requeue": N_("Requeue job %(id)s?"),
    "action.done": N_("Done: %(message)s"),
    "bell.none": N_("No notifications yet."),
    "bell.unavailable": N_("Notifications are not available yet."),
    "bell.enable": N_("Show browser notifications"),
    "bell.enabled": N_("Browser notifications are on"),
    "bell.denied": N_("The browser blocked notifications for this site."),
    "jobs.new": N_("New or removed jobs: refreshing the list"),
    "dashboard.saved": N_("Layout saved"),
    "dashboard.reset": N_("Layout reset"),
    "dashboard.confirm_reset": N_(
        "Replace your dashboard with the preset “%(preset)s”? Your own layout is lost."
    ),
    "dashboard.remove": N_("Remove widget %(name)s"),
    "submit.preview_ok": N_("Slurm would accept this job."),
    "submit.preview_refused": N_("Slurm would refuse this job: %(message)s"),
    "submit.submitted": N_("Submitted job %(id)s."),
    "submit.replayed": N_("This form was already submitted as job %(id)s."),
    "submit.uploading": N_("Uploading…"),
    "submit.uploaded": N_("Uploaded: %(names)s"),
    "submit.limit_time": N_("The partition allows at most %(limit)s."),
    "submit.limit_nodes": N_("The partition allows at most %(limit)s nodes."),
    "submit.limit_gpus": N_("The partition has %(limit)s GPUs in total."),
    "submit.estimate": N_("Estimated start: %(time)s"),
    "submit.conflict": N_("Line %(line)s of the script says %(script)s; the form's %(form)s wins."),
    "submit.no_template": N_("No template (write the script yourself)"),
    "submit.required": N_("Required"),
    "templates.saved": N_("Template saved."),
    "templates.deleted": N_("Template deleted."),
    "templates.confirm_delete": N_("Delete this template? Its history goes too."),
    "templates.bad_options": N_("Options must be a JSON object."),
    "accounting.no_data": N_("No jobs in this range."),
    "graphs.unavailable": N_("Graphs are not available: %(reason)s"),
    "graphs.no_exporter": N_("No exporter for this."),
    "graphs.no_data": N_("No figures in this time range."),
    "graphs.time": N_("Time"),
    "graphs.cpu_busy": N_("CPU busy"),
    "graphs.memory_used": N_("Memory used"),
    "graphs.load": N_("Load (1 min)"),
    "graphs.network_rx": N_("Network received"),
    "graphs.network_tx": N_("Network sent"),
    "graphs.disk_read": N_("Disk read"),
    "graphs.disk_write": N_("Disk written"),
    "graphs.gpu_util": N_("GPU utilisation"),
    "graphs.gpu_memory": N_("GPU memory used"),
    "graphs.gpu_temp": N_("GPU temperature"),
    "graphs.gpu_power": N_("GPU power"),
    "graphs.cpus_alloc": N_("CPUs allocated"),
    "graphs.memory_alloc": N_("Memory allocated"),
    "graphs.gpus_alloc": N_("GPUs allocated"),
    "history.allocated": N_("allocated"),
    "history.total": N_("total"),
    "events.title": N_("Events"),
    "events.job_start": N_("Job started"),
    "events.job_end": N_("Job ended"),
    "events.node_drain": N_("Drained through the portal"),
    "events.node_down": N_("Set down through the portal"),
    "events.node_resume": N_("Resumed through the portal"),
    "events.node_reboot": N_("Reboot asked through the portal"),
    "events.node_reason": N_("Drain or down reason set"),
    "output.waiting": N_("Waiting for output…"),
    "theme.dark": N_("Dark mode"),
    "theme.light": N_("Light mode"),
    "node.cpus": N_("CPUs %(used)s/%(total)s"),
    "bell.mark_read": N_("Mark all as read"),
    "nav.more": N_("More"),
    "settings.saved": N_("Saved. The change applies to the next job events."),
    "submit.copy_variable": N_("Click to copy the variable your script uses for this file"),
    "submit.copy_variable_named": N_("Copy %(name)s"),
    "submit.variable_copied": N_("Copied %(name)s"),
    "submit.copy_failed": N_("Could not copy: select the name and copy it yourself."),
    "submit.qos_default": N_("The account's default QOS"),
    "submit.qos_default_named": N_("The account's default QOS (%(qos)s)"),
    "partition.cpus": N_("%(used)s of %(total)s CPUs"),
    "partition.jobs": N_("%(running)s running, %(pending)s queued"),
    "notify.started.title": N_("Job started"),
    "notify.started.body": N_("Job %(job_id)s (%(job_name)s) started on %(nodes)s."),
    "notify.started.body_plain": N_("Job %(job_id)s (%(job_name)s) started."),
    "notify.completed.title": N_("Job completed"),
    "notify.completed.body": N_("Job %(job_id)s (%(job_name)s) completed."),
    "notify.failed.title": N_("Job failed"),
    "notify.failed.body": N_("Job %(job_id)s (%(job_name)s) failed with exit code %(exit_code)s."),
    "notify.failed.body_plain": N_("Job %(job_id)s (%(job_name)s) failed."),
    "notify.timed_out.title": N_("Job timed out"),
    "notify.timed_out.body": N_("Job %(job_id)s (%(job_name)s) was stopped at its time limit."),
    "notify.cancelled.title": N_("Job cancelled"),
    "notify.cancelled.body": N_("Job %(job_id)s (%(job_name)s) was cancelled."),
    "notify.time_limit.title": N_("Time limit soon"),
    "notify.time_limit.body": N_(
        "Job %(job_id)s (%(job_name)s) has about %(minutes_left)s minutes left."
    ),
    "notify.gpu_idle.title": N_("GPUs idle"),
    "notify.gpu_idle.body": N_(
        "Job %(job_id)s (%(job_name)s) has kept its GPUs below %(threshold)s for "
        "%(minutes)s minutes (at most %(peak)s). See its graphs; if it does not need "
        "GPUs, resubmit it without them so others can use them."
    ),
    "notify.report_ready.title": N_("Report ready"),
    "notify.report_ready.body": N_("Your report %(title)s (%(format)s) is ready."),
    "notify.report_failed.title": N_("Report failed"),
    "notify.report_failed.body": N_(
        "Your report %(title)s (%(format)s) could not be generated: %(error)s"
    ),
    "notify.disk_warning.title": N_("Disk usage warning"),
    "notify.disk_critical.title": N_("Disk usage critical"),
    "notify.disk_cleared.title": N_("Disk usage back below threshold"),
    "notify.disk.shared.active": N_(
        "Shared storage %(name)s is %(percent)s full (threshold %(threshold)s)."
    ),
    "notify.disk.scratch.active": N_(
        "Scratch on node %(name)s is %(percent)s full (threshold %(threshold)s)."
    ),
    "notify.disk.quota.active": N_(
        "You have used %(percent)s of your quota on %(name)s (threshold %(threshold)s)."
    ),
    "notify.disk.area.active": N_(
        "The disk holding your file area %(name)s is %(percent)s full (threshold %(threshold)s)."
    ),
    "notify.disk.shared.cleared": N_(
        "Shared storage %(name)s is back below the threshold: %(percent)s used."
    ),
    "notify.disk.scratch.cleared": N_(
        "Scratch on node %(name)s is back below the threshold: %(percent)s used."
    ),
    "notify.disk.quota.cleared": N_(
        "Your quota use on %(name)s is back below the threshold: %(percent)s."
    ),
    "notify.disk.area.cleared": N_(
        "The disk holding your file area %(name)s is back below the threshold: %(percent)s used."
    ),
    # Slurm's mail (issue 15.4) and Alertmanager's alerts (15.5)
    "notify.time_limit.body_percent": N_(
        "Job %(job_id)s (%(job_name)s) has used %(percent_used)s percent of its time limit."
    ),
    "notify.requeued.title": N_("Job requeued"),
    "notify.requeued.body": N_("Job %(job_id)s (%(job_name)s) was requeued."),
    # Held, from the portal's own snapshot (issue 15.2)
    "notify.held.title": N_("Job held"),
    "notify.held.body": N_(
        "Job %(job_id)s (%(job_name)s) is held and will not start until released."
    ),
    # Interactive sessions ready / ending soon (bell events "ready", "ending" of kind session)
    "notify.ready.title": N_("Interactive session ready"),
    "notify.ready.body": N_("Your %(app)s session %(session_id)s is ready to connect."),
    "notify.ending.title": N_("Interactive session ending soon"),
    "notify.ending.body": N_(
        "Your %(app)s session %(session_id)s ends in about %(minutes_left)s minutes, "
        "when its job reaches its time limit."
    ),
    "notify.alert_firing.title": N_("Alert: %(alertname)s"),
    "notify.alert_resolved.title": N_("Resolved: %(alertname)s"),
    "common.remove": N_("Remove"),
    "common.close": N_("Close"),
    "files.new_folder": N_("New folder"),
    "files.bad_name": N_("A name must not be empty, . or .., nor contain a slash."),
    "files.created": N_("Created %(name)s."),
    "files.rename": N_("Rename %(name)s"),
    "files.renamed": N_("Renamed to %(name)s."),
    "files.confirm_delete": N_("Move %(name)s to the trash?"),
    "files.deleted": N_("Moved %(name)s to the trash."),
    "files.loading": N_("Loading…"),
    "files.truncated": N_("Only the beginning of the file is shown."),
    "files.image_of": N_("Image %(name)s"),
    "files.open_pdf": N_("Open the PDF"),
    "files.download_only": N_("Download"),
    "files.no_preview": N_("This file is not shown here; download it instead."),
    "files.conflict": N_(
        "The file changed since you opened it. Your text was not saved: "
        "copy it, reopen the file and apply your changes again."
    ),
    "files.saved": N_("Saved."),
    "files.upload_gone": N_("The upload can no longer be resumed."),
    "files.uploading": N_("Uploading %(name)s"),
    "files.uploaded": N_("Uploaded"),
    "files.uploaded_count": N_("Uploaded %(count)s files."),
    "files.copy_title": N_("Copy %(name)s"),
    "files.move_title": N_("Move %(name)s"),
    "files.copied": N_("Copied %(name)s to %(where)s."),
    "files.moved": N_("Moved %(name)s to %(where)s."),
    "files.searching": N_("Searching…"),
    "files.search_found": N_("Matches: %(count)s"),
    "files.search_none": N_("No matches."),
    "files.search_truncated": N_(
        "Stopped after %(count)s matches: the search took too long or found too many."
    ),
    "files.search_cut": N_("The search was cut short."),
    "files.restore": N_("Restore"),
    "files.restore_name": N_("Restore %(name)s"),
    "files.restored": N_("Restored %(name)s."),
    "files.trash_count": N_("In the trash: %(count)s"),
    "files.trash_empty": N_("The trash is empty."),
    "files.storage": N_("Storage"),
    "files.disk_used": N_("Disk used in %(name)s"),
    "files.space_free": N_("%(free)s free of %(total)s"),
    "files.quota_used": N_("Quota: %(used)s used of %(limit)s"),
    "files.quota_none": N_("No quota is set for you here."),
    "files.quota_unknown": N_("Quota: unknown on this system."),
    "picker.up": N_("Up one folder"),
    "picker.add": N_("Add %(name)s"),
    "picker.added": N_("Added %(name)s."),
    "picker.empty": N_("This folder is empty."),
    "picker.no_roots": N_("You have no file areas."),
    "sessions.launching": N_("Starting %(name)s…"),
    "sessions.launch_failed": N_("The session could not be started: %(message)s"),
    "sessions.confirm_delete": N_(
        "Delete this %(name)s session? Everything running in it stops at once."
    ),
    "sessions.deleted": N_("The session was deleted."),
    "sessions.action_failed": N_("That did not work: %(message)s"),
    "sessions.left": N_("%(time)s left"),
    "sessions.extended": N_("The time limit was extended."),
    "sessions.extend_running_refused": N_(
        "Slurm lets only its operators and administrators give a running job more time; "
        "the time limit was not changed."
    ),
    "sessions.log_empty": N_("The log is empty."),
    "sessions.new_list": N_("Your sessions changed: refreshing the list"),
    "vnc.connecting": N_("Connecting…"),
    "vnc.connected": N_("Connected"),
    "vnc.disconnected": N_("Disconnected. Reconnect to continue."),
    "vnc.refused": N_("The desktop refused the connection."),
    "vnc.clipboard_sent": N_("Sent to the remote clipboard."),
    "vnc.clipboard_received": N_("The remote clipboard changed: its text is below."),
    "vnc.no_fullscreen": N_("This browser cannot show the desktop full screen."),
    "vnc.load_failed": N_("The desktop viewer could not be loaded."),
    "share.created": N_("Anyone logged in to the portal with this link can watch (not control)."),
    "share.copied": N_("Link copied."),
    "share.copy_failed": N_("Select the link and copy it yourself."),
    "share.revoked": N_("The link was revoked; anyone watching was disconnected."),
    "share.gone": N_("This link was revoked, or the session has ended."),
    "share.waiting": N_("The session is not running yet; this page connects when it is."),
}


def js_catalog(lang: str) -> dict[str, str]:
    """The scripts' strings plus state labels, in one language, for ``<script type=json>``."""
    catalog = {key: gettext(lang, text) for key, text in JS_MESSAGES.items()}
    for status, label in JOB_STATUS_LABELS.items():
        catalog[f"job_status.{status}"] = gettext(lang, label)
    for status, label in NODE_STATUS_LABELS.items():
        catalog[f"node_status.{status}"] = gettext(lang, label)
    for state, label in SESSION_STATE_LABELS.items():
        catalog[f"session_state.{state}"] = gettext(lang, label)
    return catalog
