"""How a file is previewed: by its name (text with a language, a table, an image, a
PDF, or download only) and, for text and tables, its first bytes decoded safely."""

from __future__ import annotations

import codecs
import csv
import io
import mimetypes
import posixpath
from typing import Literal

# --- preview classification -----------------------------------------------------------

INLINE_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".avif": "image/avif",
}
TABLES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
#: Never shown inline, whatever else they are: they can carry scripts.
DOWNLOAD_ONLY = {".svg", ".svgz", ".html", ".htm", ".xhtml", ".xht", ".mht", ".mhtml"}
LANGUAGES = {
    ".py": "python", ".pyi": "python", ".ipynb": "json", ".sh": "bash", ".bash": "bash",
    ".zsh": "bash", ".slurm": "bash", ".sbatch": "bash", ".pbs": "bash", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".cu": "cuda",
    ".f": "fortran", ".f90": "fortran", ".f95": "fortran", ".f03": "fortran", ".for": "fortran",
    ".r": "r", ".jl": "julia", ".m": "matlab", ".java": "java", ".js": "javascript",
    ".ts": "typescript", ".go": "go", ".rs": "rust", ".pl": "perl", ".rb": "ruby",
    ".lua": "lua", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
    ".ini": "ini", ".cfg": "ini", ".conf": "ini", ".xml": "xml", ".md": "markdown",
    ".rst": "restructuredtext", ".tex": "latex", ".css": "css", ".sql": "sql",
    ".txt": "plaintext", ".log": "plaintext", ".out": "plaintext", ".err": "plaintext",
    ".def": "plaintext", ".cmake": "cmake", ".mk": "makefile", ".diff": "diff",
    ".patch": "diff", ".dat": "plaintext",
}  # fmt: skip
NAMED_LANGUAGES = {"makefile": "makefile", "dockerfile": "dockerfile", "cmakelists.txt": "cmake"}

PreviewKind = Literal["text", "table", "image", "pdf", "download", "unknown"]


def classify(name: str) -> tuple[PreviewKind, str | None]:
    """How a file is previewed, by name: (kind, language / media type / delimiter)."""
    lower = name.lower()
    ext = posixpath.splitext(lower)[1]
    if ext in DOWNLOAD_ONLY:
        return "download", None
    if ext in INLINE_IMAGES:
        return "image", INLINE_IMAGES[ext]
    if ext == ".pdf":
        return "pdf", "application/pdf"
    if ext in TABLES:
        return "table", TABLES[ext]
    if lower in NAMED_LANGUAGES:
        return "text", NAMED_LANGUAGES[lower]
    if ext in LANGUAGES:
        return "text", LANGUAGES[ext]
    guessed, _ = mimetypes.guess_type(lower)
    if guessed and guessed.startswith("text/"):
        return "text", "plaintext"
    if guessed or ext in (".gz", ".zip", ".tar", ".sif", ".h5", ".nc", ".npy", ".bin"):
        return "download", None
    return "unknown", None


def looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def decode_prefix(data: bytes) -> str:
    """UTF-8 text of ``data``, dropping a character cut in half at the end."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)


def parse_table(
    text: str, delimiter: str, max_rows: int, cut: bool
) -> tuple[list[list[str]], bool]:
    """Rows of a CSV/TSV text; the last row is dropped when the text was cut there.
    Raises ``csv.Error`` for text that is not CSV (the preview then shows it as text)."""
    rows: list[list[str]] = []
    truncated = cut
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if len(rows) > max_rows:
            truncated = True
            break
        rows.append([cell[:1000] for cell in row[:200]])
    if cut and rows:
        rows.pop()
    return rows, truncated
