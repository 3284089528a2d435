"""The run-as helper's file operations: which function performs each one.

Every file operation names a root and a path inside it and walks from the root's
descriptor (``helper_walk``); there is no operation on an absolute path. The
operations live by concern in ``helper_read`` (list, read), ``helper_space`` (roots,
usage), ``helper_write`` (write, mkdir, rename/move, chmod, copy), ``helper_trash``
(delete, trash, restore), ``helper_zip``, ``helper_search`` and ``helper_upload``;
``runas/assemble.py`` pastes them all, this table last, into the one helper program.
Standard library only.
"""

from __future__ import annotations

from hpcportal.runas.helper_read import op_list, op_read
from hpcportal.runas.helper_search import op_search
from hpcportal.runas.helper_space import op_roots, op_usage
from hpcportal.runas.helper_trash import op_delete, op_restore, op_trash_list
from hpcportal.runas.helper_upload import op_upload
from hpcportal.runas.helper_write import op_chmod, op_copy, op_mkdir, op_rename, op_write
from hpcportal.runas.helper_zip import op_zip

FILE_OPERATIONS = {
    "list": op_list,
    "read": op_read,
    "write": op_write,
    "mkdir": op_mkdir,
    "rename": op_rename,
    "move": op_rename,
    "copy": op_copy,
    "chmod": op_chmod,
    "delete": op_delete,
    "restore": op_restore,
    "trash": op_trash_list,
    "zip": op_zip,
    "search": op_search,
    "usage": op_usage,
    "roots": op_roots,
    "upload": op_upload,
}
