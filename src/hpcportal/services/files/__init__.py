"""Files and storage, as the user: browse, preview, edit, move, copy, trash, download.

Every file access runs through the run-as helper *as the asking user* (``AsUser``,
whose operations walk from a root), so the kernel decides what may be read or
changed; a 403 here is the system's EACCES, never a portal rule. The portal only
names a root (from ``file_roots``: ``{home}``, ``/scratch/{user}``, ...) and a path
inside it.

- ``paths``: the file areas of a person and the paths and names accepted;
- ``models``: what the file API answers and accepts;
- ``preview``: how a file is previewed, by name and first bytes;
- ``headers``: HTTP headers of file answers and the Range / If-Match parsers;
- ``service``: ``FileService``, the operations for one user.

The package offers the service and the models pages and readers of usage take;
the routers import from the modules themselves.
"""

from hpcportal.services.files.models import (
    Entry,
    FileInfo,
    Listing,
    Quota,
    RootInfo,
    RootUsage,
    Sort,
    Space,
    UsageReport,
)
from hpcportal.services.files.service import FileService

__all__ = [
    "Entry",
    "FileInfo",
    "FileService",
    "Listing",
    "Quota",
    "RootInfo",
    "RootUsage",
    "Sort",
    "Space",
    "UsageReport",
]
