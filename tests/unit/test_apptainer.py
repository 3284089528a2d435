"""The Apptainer image catalog, the job wrapper, and the test stand-in for ``apptainer``.

Images are a few random bytes named ``*.sif``: the catalog only reads names, ``stat``
and sidecars, and asks ``apptainer inspect`` (here the stand-in in
``tests/standins/apptainer``, or a counting fake) for labels.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from hpcportal.errors import InvalidInput, NotFound
from hpcportal.services.apptainer import (
    ApptainerCatalog,
    Image,
    filter_images,
    find_image,
    image_id,
    labels_from_inspect,
    parse_file_name,
    wrap_script,
)

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "apptainer"
NO_APPTAINER = "hpcportal-test-no-such-apptainer"


def make_image(path: Path, content: bytes = b"not really a SIF image\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


class CountingInspect:
    """A fake ``apptainer inspect`` runner that counts its calls."""

    def __init__(self, labels: dict[str, str] | None = None, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.labels = labels or {}
        self.fail = fail

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
        self.calls.append(list(argv))
        if self.fail:
            raise subprocess.TimeoutExpired(list(argv), timeout)
        return json.dumps({"data": {"attributes": {"labels": self.labels}}, "type": "container"})


@pytest.fixture
def standin_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "standin.log"
    monkeypatch.setenv("APPTAINER_STANDIN_LOG", str(log))
    return log


def logged(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


# --- ids and names ---------------------------------------------------------------------


def test_ids_are_url_safe_and_follow_the_path() -> None:
    assert image_id(PurePosixPath("python_3.11.sif")) == "python_3.11"
    assert image_id(PurePosixPath("compute/python_3.11.sif")) == "compute--python_3.11"
    odd = image_id(PurePosixPath("my images/R 4.3 (cran).sif"))
    assert odd.startswith("my_images--R_4.3__cran_-")
    assert all(c.isalnum() or c in "._-" for c in odd)
    assert odd == image_id(PurePosixPath("my images/R 4.3 (cran).sif"))  # stable


def test_ids_never_collide_around_the_separator() -> None:
    paths = ["a-/b.sif", "a/-b.sif", "a--b.sif", "a/b.sif", "a/b_.sif", "a/b?.sif"]
    ids = {image_id(PurePosixPath(p)) for p in paths}
    assert len(ids) == len(paths)


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("python_3.11.sif", ("python", "3.11")),
        ("tensorflow_gpu_2.15.sif", ("tensorflow_gpu", "2.15")),
        ("cuda-12.2.sif", ("cuda", "12.2")),
        ("tool_v2.sif", ("tool", "v2")),
        ("ubuntu_latest.sif", ("ubuntu", "latest")),
        ("ubuntu.sif", ("ubuntu", None)),
    ],
)
def test_name_and_version_from_the_file_name(
    file_name: str, expected: tuple[str, str | None]
) -> None:
    assert parse_file_name(file_name) == expected


# --- scanning without apptainer: file names and sidecars -------------------------------


def file_catalog(*dirs: Path) -> ApptainerCatalog:
    return ApptainerCatalog(list(dirs), NO_APPTAINER)


def test_scan_finds_images_one_level_deep_with_categories(tmp_path: Path) -> None:
    root = tmp_path / "images"
    make_image(root / "python_3.11.sif", b"x" * 123)
    make_image(root / "compute" / "gromacs_2023.sif")
    make_image(root / "compute" / "deeper" / "ignored.sif")
    make_image(root / "notes.txt")
    make_image(root / ".hidden.sif")
    (root / "compute" / "not-an-image.sif").mkdir()

    catalog = file_catalog(root)
    result = catalog.scan()

    assert result.added == 2 and result.total == 2 and result.problems == []
    images = {i.id: i for i in catalog.images()}
    assert set(images) == {"python_3.11", "compute--gromacs_2023"}
    python = images["python_3.11"]
    assert python.name == "python_3.11.sif"
    assert python.path == root / "python_3.11.sif"
    assert python.category is None
    assert python.size_bytes == 123
    assert python.modified.timestamp() == pytest.approx((root / "python_3.11.sif").stat().st_mtime)
    assert python.metadata.source == "file"
    assert (python.metadata.name, python.metadata.version) == ("python", "3.11")
    assert images["compute--gromacs_2023"].category == "compute"


def test_sidecars_in_both_spellings_give_metadata(tmp_path: Path) -> None:
    make_image(tmp_path / "python_3.11.sif")
    (tmp_path / "python_3.11.sif.yaml").write_text(
        "description: CPython with numpy\n"
        "version: '3.11.9'\n"
        "gpu: false\n"
        "labels:\n  maintainer: hpc-team\n  site: 42\n"
        "apps: [jupyter, ipython]\n"
    )
    make_image(tmp_path / "gpu" / "pytorch_2.3.sif")
    (tmp_path / "gpu" / "pytorch_2.3.yaml").write_text("gpu: true\ndescription: PyTorch\n")

    catalog = file_catalog(tmp_path)
    python = find_image(catalog, "python_3.11").metadata
    assert python.description == "CPython with numpy"
    assert python.version == "3.11.9"
    assert python.gpu is False
    assert python.labels == {"maintainer": "hpc-team", "site": "42"}
    assert python.apps == ["jupyter", "ipython"]
    torch = find_image(catalog, "gpu--pytorch_2.3").metadata
    assert torch.gpu is True and torch.description == "PyTorch" and torch.version == "2.3"


def test_a_broken_sidecar_does_not_hide_the_image(tmp_path: Path) -> None:
    make_image(tmp_path / "r_4.3.sif")
    (tmp_path / "r_4.3.yaml").write_text("description: [unclosed\n")
    make_image(tmp_path / "julia.sif")
    (tmp_path / "julia.yaml").write_text("- just\n- a list\n")

    catalog = file_catalog(tmp_path)
    assert find_image(catalog, "r_4.3").metadata.description is None
    assert find_image(catalog, "julia").metadata.name == "julia"


def test_missing_directories_are_reported_not_fatal(tmp_path: Path) -> None:
    make_image(tmp_path / "ok.sif")
    result = file_catalog(tmp_path / "missing", tmp_path).scan()
    assert result.total == 1
    assert len(result.problems) == 1 and "missing" in result.problems[0]


def test_the_same_path_in_two_directories_keeps_both(tmp_path: Path) -> None:
    first = make_image(tmp_path / "site" / "python_3.11.sif")
    second = make_image(tmp_path / "project" / "python_3.11.sif")
    catalog = file_catalog(tmp_path / "site", tmp_path / "project")
    by_path = {i.path: i.id for i in catalog.images()}
    assert by_path[first] == "python_3.11"
    assert by_path[second].startswith("python_3.11-") and len(by_path) == 2


def test_scan_counts_added_removed_updated_unchanged(tmp_path: Path) -> None:
    keep = make_image(tmp_path / "keep.sif")
    change = make_image(tmp_path / "change.sif")
    gone = make_image(tmp_path / "gone.sif")
    catalog = file_catalog(tmp_path)
    assert catalog.scan().added == 3

    gone.unlink()
    make_image(tmp_path / "new.sif")
    change.write_bytes(b"a new build, longer than before")
    result = catalog.scan()
    assert (result.added, result.removed, result.updated, result.unchanged) == (1, 1, 1, 1)
    assert catalog.get("keep") is not None and catalog.get("gone") is None
    assert keep.exists()


def test_sidecar_edits_are_picked_up_without_touching_the_image(tmp_path: Path) -> None:
    make_image(tmp_path / "tool.sif")
    sidecar = tmp_path / "tool.sif.yaml"
    sidecar.write_text("description: old\n")
    catalog = file_catalog(tmp_path)
    assert find_image(catalog, "tool").metadata.description == "old"
    sidecar.write_text("description: new text\n")
    catalog.scan()
    assert find_image(catalog, "tool").metadata.description == "new text"


# --- scanning with apptainer inspect ---------------------------------------------------


def test_a_thousand_images_are_inspected_once_then_cached(tmp_path: Path) -> None:
    for n in range(1000):
        make_image(tmp_path / f"cat{n % 10}" / f"tool_{n}.sif")
    runner = CountingInspect({"org.opencontainers.image.title": "tool"})
    catalog = ApptainerCatalog([tmp_path], str(STANDIN), runner=runner)

    first = catalog.scan()
    assert (first.total, first.inspect_calls, len(runner.calls)) == (1000, 1000, 1000)
    assert runner.calls[0][:3] == [str(STANDIN), "inspect", "--json"]
    for _ in range(3):
        again = catalog.scan()
        assert (again.unchanged, again.inspect_calls) == (1000, 0)
    assert len(runner.calls) == 1000

    touched = tmp_path / "cat3" / "tool_3.sif"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    result = catalog.scan()
    assert (result.updated, result.unchanged, result.inspect_calls) == (1, 999, 1)
    assert runner.calls[-1][-1] == str(touched)


def test_reads_reuse_the_scan_until_it_is_due(tmp_path: Path) -> None:
    make_image(tmp_path / "a.sif")
    now = [1000.0]
    runner = CountingInspect()
    catalog = ApptainerCatalog(
        [tmp_path], str(STANDIN), runner=runner, max_age_seconds=60, clock=lambda: now[0]
    )
    assert catalog.needs_scan()
    for _ in range(50):
        assert [i.id for i in catalog.images()] == ["a"]
        catalog.get("a")
    assert catalog.scanned_at is not None and not catalog.needs_scan()
    make_image(tmp_path / "b.sif")
    assert catalog.get("b") is None  # not due yet
    now[0] += 61
    assert catalog.get("b") is not None
    assert len(runner.calls) == 2  # a once, b once


def test_inspect_labels_become_metadata(tmp_path: Path) -> None:
    make_image(tmp_path / "python_3.11.sif")
    runner = CountingInspect(
        {
            "org.opencontainers.image.title": "CPython",
            "org.opencontainers.image.description": "Python with numpy",
            "GPU": "yes",
            "apps": "jupyter, ipython",
            "org.label-schema.schema-version": "1.0",
        }
    )
    meta = find_image(ApptainerCatalog([tmp_path], str(STANDIN), runner=runner), "python_3.11")
    assert meta.metadata.source == "inspect"
    assert meta.metadata.name == "CPython"
    assert meta.metadata.version == "3.11"  # no version label: from the file name
    assert meta.metadata.description == "Python with numpy"
    assert meta.metadata.gpu is True
    assert meta.metadata.apps == ["jupyter", "ipython"]
    assert meta.metadata.labels["org.label-schema.schema-version"] == "1.0"


def test_a_failing_inspect_falls_back_to_file_metadata(tmp_path: Path) -> None:
    make_image(tmp_path / "broken_1.0.sif")
    (tmp_path / "broken_1.0.yaml").write_text("description: from the sidecar\n")
    runner = CountingInspect(fail=True)
    catalog = ApptainerCatalog([tmp_path], str(STANDIN), runner=runner)
    image = find_image(catalog, "broken_1.0")
    assert image.metadata.source == "file"
    assert image.metadata.description == "from the sidecar"
    catalog.scan()
    assert len(runner.calls) == 1  # a broken image is not re-inspected on every scan


@pytest.mark.parametrize(
    "doc",
    [
        {"data": {"attributes": {"labels": {"version": "1.2"}}, "type": "container"}},
        {"attributes": {"labels": {"version": "1.2"}}, "type": "container"},
        {"attributes": {"labels": json.dumps({"version": "1.2"})}, "type": "container"},
        {"version": "1.2"},
    ],
    ids=["apptainer-1", "singularity-3.1", "labels-as-json-string", "bare-map"],
)
def test_labels_from_every_known_inspect_shape(doc: object) -> None:
    assert labels_from_inspect(doc) == {"version": "1.2"}


@pytest.mark.parametrize("doc", [None, [], "text", {"data": 3}, {"data": {"attributes": {}}}])
def test_labels_from_unexpected_shapes_are_empty(doc: object) -> None:
    assert labels_from_inspect(doc) == {}


def test_real_inspect_through_the_standin(tmp_path: Path, standin_log: Path) -> None:
    """The default runner starts a process: here the stand-in, logging each call."""
    images = tmp_path / "images"
    make_image(images / "bio" / "samtools_1.19.sif")
    (images / "bio" / "samtools_1.19.sif.yaml").write_text(
        "description: SAM tools\ngpu: false\nlabels:\n  maintainer: bio-team\n"
    )
    make_image(images / "plain.sif")
    catalog = ApptainerCatalog([images], str(STANDIN))

    assert catalog.inspect_available()
    assert catalog.scan().inspect_calls == 2
    samtools = find_image(catalog, "bio--samtools_1.19").metadata
    assert samtools.source == "inspect"
    assert samtools.description == "SAM tools" and samtools.gpu is False
    assert samtools.labels["maintainer"] == "bio-team"
    assert find_image(catalog, "plain").metadata.source == "inspect"
    calls = logged(standin_log)
    assert sorted(c[1:] for c in calls) == [
        ["inspect", "--json", str(images / "bio" / "samtools_1.19.sif")],
        ["inspect", "--json", str(images / "plain.sif")],
    ]
    catalog.scan()
    assert len(logged(standin_log)) == 2


# --- filters and lookup ----------------------------------------------------------------


def test_filters_by_category_and_substring(tmp_path: Path) -> None:
    make_image(tmp_path / "compute" / "python_3.11.sif")
    make_image(tmp_path / "compute" / "gromacs_2023.sif")
    make_image(tmp_path / "viz" / "paraview_5.11.sif")
    (tmp_path / "viz" / "paraview_5.11.yaml").write_text("description: Scientific VISUALISATION\n")
    images = file_catalog(tmp_path).images()

    assert {i.id for i in filter_images(images, category="compute")} == {
        "compute--python_3.11",
        "compute--gromacs_2023",
    }
    assert [i.id for i in filter_images(images, q="visual")] == ["viz--paraview_5.11"]
    assert [i.id for i in filter_images(images, category="viz", q="PYTHON")] == []
    assert len(filter_images(images)) == 3


def test_find_image_raises_not_found_with_the_id(tmp_path: Path) -> None:
    catalog = file_catalog(tmp_path)
    with pytest.raises(NotFound, match="'nope'"):
        find_image(catalog, "nope")


# --- wrapping a job --------------------------------------------------------------------


def an_image(path: Path, image_id: str = "python_3.11") -> Image:
    return Image.model_validate(
        {
            "id": image_id,
            "name": path.name,
            "path": path,
            "category": None,
            "size_bytes": 1,
            "modified": "2026-11-21T00:00:00Z",
            "metadata": {"name": "python", "source": "file"},
        }
    )


def test_wrapper_for_a_cpu_job() -> None:
    image = an_image(Path("/images/python_3.11.sif"))
    body = wrap_script(image, "/home/alice/job/inner.sh", gpu=False, binds=[], command="apptainer")
    assert body == "exec apptainer exec /images/python_3.11.sif bash /home/alice/job/inner.sh\n"


def test_wrapper_for_a_gpu_job_with_binds() -> None:
    image = an_image(Path("/images/pytorch.sif"))
    body = wrap_script(
        image,
        "/home/alice/inner.sh",
        gpu=True,
        binds=["/scratch", "/data:/data:ro"],
        command="/opt/apptainer/bin/apptainer",
    )
    assert body == (
        "exec /opt/apptainer/bin/apptainer exec --nv --bind /scratch --bind /data:/data:ro "
        "/images/pytorch.sif bash /home/alice/inner.sh\n"
    )
    assert "--cleanenv" not in body


def test_wrapper_quotes_every_word() -> None:
    image = an_image(Path("/images/my images/it's $HOME.sif"))
    body = wrap_script(
        image,
        "/home/alice/my job/in ner;rm -rf ~.sh",
        gpu=False,
        binds=["/a b:/c"],
        command="apptainer",
    )
    assert body.count("\n") == 1
    words = shlex.split(body)
    assert words == [
        "exec",
        "apptainer",
        "exec",
        "--bind",
        "/a b:/c",
        "/images/my images/it's $HOME.sif",
        "bash",
        "/home/alice/my job/in ner;rm -rf ~.sh",
    ]


def test_wrapper_refuses_empty_words() -> None:
    image = an_image(Path("/images/x.sif"))
    with pytest.raises(InvalidInput):
        wrap_script(image, "/s.sh", gpu=False, binds=[""], command="apptainer")
    with pytest.raises(InvalidInput):
        wrap_script(image, "/s.sh", gpu=False, binds=[], command=" ")
    with pytest.raises(InvalidInput):
        wrap_script(image, "", gpu=False, binds=[], command="apptainer")


USER_SCRIPT = """\
#!/bin/bash
echo "start $1"
cat <<EOF
inside heredoc
EOF
echo APPTAINER_SCRIPT
APPTAINER_SCRIPT=still-running
echo "var=$APPTAINER_SCRIPT"
echo "env=$PORTAL_TEST_VALUE"
echo "container=$(basename "$APPTAINER_CONTAINER")"
echo end
"""


def test_wrapped_job_runs_the_whole_user_script_through_the_standin(
    tmp_path: Path, standin_log: Path
) -> None:
    """What Slurm would run: the wrapper body in bash, with the stand-in as apptainer."""
    job = tmp_path / "a job dir"
    inner = job / "user script.sh"
    inner.parent.mkdir()
    inner.write_text(USER_SCRIPT)
    image = an_image(make_image(tmp_path / "img dir" / "python_3.11.sif"))
    body = wrap_script(image, str(inner), gpu=True, binds=["/tmp"], command=str(STANDIN))
    batch = job / "batch.sh"
    batch.write_text("#!/bin/bash\n" + body)

    env = {**os.environ, "PORTAL_TEST_VALUE": "kept through the container"}
    done = subprocess.run(
        ["bash", str(batch)], capture_output=True, text=True, env=env, timeout=30, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "start ",
        "inside heredoc",
        "APPTAINER_SCRIPT",
        "var=still-running",
        "env=kept through the container",
        "container=python_3.11.sif",
        "end",
    ]
    assert logged(standin_log) == [
        [str(STANDIN), "exec", "--nv", "--bind", "/tmp", str(image.path), "bash", str(inner)]
    ]


# --- the stand-in itself ---------------------------------------------------------------


def run_standin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STANDIN), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=30,
        check=False,
    )


def test_standin_is_an_executable_labelled_stand_in() -> None:
    assert os.access(STANDIN, os.X_OK)
    assert STANDIN.stat().st_mode & 0o777 == 0o755
    head = STANDIN.read_text().splitlines()
    assert head[0] == "#!/usr/bin/env python3"
    assert "TEST STAND-IN FOR APPTAINER" in "\n".join(head[:10])


def test_standin_exec_skips_options_and_runs_the_command(tmp_path: Path, standin_log: Path) -> None:
    image = make_image(tmp_path / "x.sif")
    done = run_standin(
        "exec",
        "--nv",
        "-B",
        "/a:/b",
        "--bind=/c",
        "--contain",
        str(image),
        "sh",
        "-c",
        'echo "$0 $1 $KEEP_ME"',
        "one",
        "two",
        env={"KEEP_ME": "kept"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "one two kept\n"
    assert logged(standin_log)[-1][1:6] == ["exec", "--nv", "-B", "/a:/b", "--bind=/c"]


def test_standin_cleanenv_drops_the_environment_like_apptainer(
    tmp_path: Path, standin_log: Path
) -> None:
    image = make_image(tmp_path / "x.sif")
    script = 'echo "[$DROP_ME][$APP_VAR]"'
    env = {"DROP_ME": "x", "APPTAINERENV_APP_VAR": "set"}
    done = run_standin("exec", "--cleanenv", str(image), "sh", "-c", script, env=env)
    assert done.stdout == "[][set]\n"


def test_standin_refuses_what_it_does_not_know(tmp_path: Path, standin_log: Path) -> None:
    image = make_image(tmp_path / "x.sif")
    assert run_standin("run", str(image)).returncode == 2
    assert run_standin("exec", "--frobnicate", str(image), "true").returncode == 2
    assert run_standin("inspect", str(image)).returncode == 2  # no --json
    missing = run_standin("exec", str(tmp_path / "missing.sif"), "true")
    assert missing.returncode == 255 and "missing.sif" in missing.stderr
    assert len(logged(standin_log)) == 4


def test_standin_inspect_prints_labels_from_a_sidecar(tmp_path: Path, standin_log: Path) -> None:
    image = make_image(tmp_path / "tool_2.0.sif")
    (tmp_path / "tool_2.0.yaml").write_text(
        json.dumps({"version": "2.0.1", "gpu": True, "apps": ["a", "b"], "labels": {"k": "v"}})
    )
    done = run_standin("inspect", "--json", str(image))
    assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout)["data"]["attributes"]["labels"]
    assert labels["version"] == "2.0.1" and labels["gpu"] == "true"
    assert labels["apps"] == "a,b" and labels["k"] == "v"
