"""Files: the file manager's areas and limits, and resumable (tus) uploads.

The file areas shown to a user (``FileRoot``), the umask of what the portal creates for
them, the sizes and time limits of listings, previews, edits, searches, folder sizes
and copies, and the bounds of unfinished tus uploads. Used by ``services/files/``
(``paths.py``, ``service.py``), ``services/tus.py`` and the file pages and routers.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class FileRoot(BaseModel):
    """A file area shown to users: ``{user}`` and ``{home}`` in ``path`` are theirs."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    path: str = Field(min_length=1)


class FileSettings(BaseModel):
    """The file manager and tus uploads."""

    # Files and storage (services/files/, services/tus.py)
    file_roots: list[FileRoot] = Field(
        default_factory=lambda: [
            FileRoot(name="home", path="{home}"),
            FileRoot(name="scratch", path="/scratch/{user}"),
        ],
        description="File areas shown in the file manager; {user} and {home} are the "
        "user's. A root whose path does not exist for a user is not listed.",
    )
    file_umask: int = Field(
        default=0o022,
        ge=0,
        le=0o777,
        description="umask for files and folders the portal creates for users "
        "(uploads, edits, new folders), as a login shell's would be.",
    )
    file_list_max_limit: int = Field(
        default=1000, gt=0, le=10_000, description="Most directory entries per listing page."
    )
    file_preview_max_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Most bytes of a text or CSV preview."
    )
    file_preview_max_rows: int = Field(
        default=500, gt=0, description="Most rows of a CSV/TSV preview."
    )
    file_edit_max_bytes: int = Field(
        default=2 * 1024 * 1024, gt=0, description="Largest text file edited with PUT."
    )
    file_search_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest a file search runs."
    )
    file_search_max_results: int = Field(
        default=1000, gt=0, description="Most matches a file search returns."
    )
    file_search_content_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="Files larger than this are not searched for content.",
    )
    file_usage_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest a folder-size computation runs."
    )
    file_usage_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="A folder's sizes are reused this long (per user and folder); "
        "`refresh=1` computes them again.",
    )
    file_copy_timeout: float = Field(
        default=3600.0, gt=0, description="Longest a copy (or other long file operation) runs."
    )
    tus_max_bytes: int = Field(
        default=100 * 1024**3, gt=0, description="Largest file uploaded with tus (Upload-Length)."
    )
    tus_user_max_bytes: int = Field(
        default=200 * 1024**3,
        gt=0,
        description="Most bytes a user may have in unfinished tus uploads at once.",
    )
    tus_user_max_uploads: int = Field(
        default=20, gt=0, description="Most unfinished tus uploads per user."
    )
    tus_expire_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="An unfinished tus upload untouched this long is removed (its "
        "hidden partial file too) when its owner next creates an upload.",
    )
