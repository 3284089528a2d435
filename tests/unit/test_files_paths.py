"""Path validation and the small parsers of the file API (no helper runs here)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from hpcportal.errors import BadRequest, InvalidInput
from hpcportal.runas.assemble import helper_source
from hpcportal.runas.helper_space import parse_quota
from hpcportal.runas.helper_walk import Refused, plain_name, split_relative
from hpcportal.runas.install import helper_text
from hpcportal.services.files.headers import content_disposition, parse_etags, parse_range
from hpcportal.services.files.models import parse_mode
from hpcportal.services.files.paths import check_name, clean_path
from hpcportal.services.files.preview import classify, parse_table
from hpcportal.services.tus import parse_checksum, parse_metadata


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "a/../../etc",
        "a/..",
        "..",
        "/etc/passwd",
        "//etc/passwd",
        "a\0b",
        "\0",
        "x/" * 2100,
        "a/" + "n" * 256,
    ],
)
def test_clean_path_refuses(bad: str) -> None:
    with pytest.raises(InvalidInput):
        clean_path(bad)
    with pytest.raises(Refused):
        split_relative(bad)  # the helper refuses the same paths on its own


@pytest.mark.parametrize(
    ("given", "clean"),
    [
        ("", ""),
        (".", ""),
        ("a//b/./c/", "a/b/c"),
        (
            "%2e%2e%2f",
            "%2e%2e%2f",
        ),  # already decoded once: a literal (odd) name, never decoded again
        ("..a/b..", "..a/b.."),
        ("dir with spaces/ü.txt", "dir with spaces/ü.txt"),
    ],
)
def test_clean_path_keeps_names(given: str, clean: str) -> None:
    assert clean_path(given) == clean
    assert "/".join(split_relative(given)) == clean


def test_plain_names() -> None:
    for bad in ("", ".", "..", "a/b", "a\0", "x" * 256):
        with pytest.raises(InvalidInput):
            check_name(bad)
        with pytest.raises(Refused):
            plain_name(bad)
    assert check_name(".bashrc") == ".bashrc"


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        (None, None),
        ("bytes=0-99", {"start": 0, "end": 99}),
        ("bytes=100-", {"start": 100, "end": None}),
        ("bytes=-500", {"start": None, "end": 500}),
        ("bytes = 5 - 6", {"start": 5, "end": 6}),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=9-3", None),
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, wanted: dict[str, int | None] | None) -> None:
    assert parse_range(header) == wanted


def test_parse_etags_and_mode() -> None:
    assert parse_etags(None) is None
    assert parse_etags("*") == "*"
    assert parse_etags('"abc", W/"weak", "def"') == ["abc", "def"]
    assert parse_mode("750") == 0o750 and parse_mode("0o640") == 0o640 and parse_mode(0o700) == 448
    for bad in ("4755", "999", "rwx", -1, True, None):
        with pytest.raises(InvalidInput):
            parse_mode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "kind", "hint"),
    [
        ("job.py", "text", "python"),
        ("run.slurm", "text", "bash"),
        ("Makefile", "text", "makefile"),
        ("data.csv", "table", ","),
        ("data.TSV", "table", "\t"),
        ("plot.png", "image", "image/png"),
        ("paper.pdf", "pdf", "application/pdf"),
        ("drawing.svg", "download", None),
        ("page.html", "download", None),
        ("image.sif", "download", None),
        ("README", "unknown", None),
    ],
)
def test_classify(name: str, kind: str, hint: str | None) -> None:
    assert classify(name) == (kind, hint)


def test_content_disposition_quotes_names() -> None:
    header = content_disposition('ré"sumé;.txt', inline=False)
    assert header.startswith('attachment; filename="r__sum__.txt"')
    assert "filename*=UTF-8''r%C3%A9%22sum%C3%A9%3B.txt" in header
    assert content_disposition("a.pdf", inline=True).startswith("inline;")


def test_parse_table_drops_a_row_cut_in_half() -> None:
    rows, truncated = parse_table("a,b\n1,2\n3,4\n5,", ",", 100, cut=True)
    assert rows == [["a", "b"], ["1", "2"], ["3", "4"]] and truncated
    rows, truncated = parse_table("a\n1\n2\n3\n", ",", 2, cut=False)
    assert rows == [["a"], ["1"], ["2"]] and truncated


def test_tus_metadata_and_checksum() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    header = f"filename {b64('résumé.pdf')},root {b64('home')},empty"
    assert parse_metadata(header) == {"filename": "résumé.pdf", "root": "home", "empty": ""}
    assert parse_metadata("flag") == {"flag": ""}  # a key without a value is allowed
    for bad in ("a b c", f"filename {b64('x')},filename {b64('y')}", "k !!!", "bad=key x"):
        with pytest.raises(BadRequest):
            parse_metadata(bad)
    digest = hashlib.sha256(b"chunk").digest()
    assert parse_checksum("sha256 " + base64.b64encode(digest).decode()) == digest.hex()
    assert parse_checksum(None) is None
    for bad in ("md5 AAAA", "sha256 !!!", "sha256 " + base64.b64encode(b"short").decode()):
        with pytest.raises(BadRequest):
            parse_checksum(bad)


def test_quota_output_is_parsed() -> None:
    sample = (
        "Disk quotas for user alice (uid 1001): \n"
        "     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace\n"
        "      /dev/sda1  120000* 100000  200000    6000      42       0       0       0\n"
    )
    [entry] = parse_quota(sample)
    assert entry["filesystem"] == "/dev/sda1" and entry["over"]
    assert entry["used"] == 120000 * 1024 and entry["hard"] == 200000 * 1024
    assert entry["files"] == 42


def test_helper_is_one_self_contained_program() -> None:
    source = helper_source()
    compile(source, "hpcportal-runas", "exec")
    assert "from hpcportal" not in source  # nothing of the package is imported at run time
    assert "def op_zip" in source and "def op_slurm" in source
    # runuser passes the source as one argv element: Linux caps those at 128 KiB.
    assert len(source.encode()) < 128 * 1024
    installed = helper_text(1234)
    assert "MIN_UID = 1234" in installed and "def op_search" in installed
