"""The Apptainer image API through the real app over HTTP, with real PAM logins.

Apptainer cannot be installed here, so ``apptainer_command`` is the test stand-in
(``tests/standins/apptainer``): the portal really runs it for ``inspect --json``, and
it logs every call, so the tests can also count them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.portal_server import RunningPortal
from tests.integration.portals import PortalFactory

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "apptainer"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("apptainer-images")
    for relative in ("python_3.11.sif", "compute/gromacs_2023.sif", "gpu/pytorch_2.3.sif"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"fake image bytes " + relative.encode())
    (root / "gpu" / "pytorch_2.3.sif.yaml").write_text(
        "description: PyTorch with CUDA\ngpu: true\nlabels:\n  maintainer: ml-team\n"
    )
    return root


@pytest.fixture(scope="module")
def standin_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("apptainer-log") / "standin.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APPTAINER_STANDIN_LOG", str(log))
        yield log


@pytest.fixture(scope="module")
def portal(images: Path, standin_log: Path, make_portal: PortalFactory) -> RunningPortal:
    return make_portal(apptainer_image_dirs=[images], apptainer_command=str(STANDIN))


def call(
    portal: RunningPortal, method: str, path: str, headers: dict[str, str], **params: Any
) -> httpx.Response:
    with portal.client() as c:
        return c.request(method, f"/api/v1/apptainer{path}", headers=headers, params=params)


def inspect_calls(log: Path) -> list[list[str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [argv for argv in map(json.loads, lines) if argv[1:2] == ["inspect"]]


def test_list_images_with_inspected_metadata(
    portal: RunningPortal, alice: dict[str, str], images: Path, standin_log: Path
) -> None:
    r = call(portal, "GET", "/images", alice)
    assert r.status_code == 200, r.text
    body = r.json()
    by_id = {i["id"]: i for i in body["items"]}
    assert set(by_id) == {"python_3.11", "compute--gromacs_2023", "gpu--pytorch_2.3"}
    assert body["total"] == 3 and body["scanned_at"]
    torch = by_id["gpu--pytorch_2.3"]
    assert torch["path"] == str(images / "gpu" / "pytorch_2.3.sif")
    assert torch["category"] == "gpu" and torch["name"] == "pytorch_2.3.sif"
    assert torch["size_bytes"] == (images / "gpu" / "pytorch_2.3.sif").stat().st_size
    meta = torch["metadata"]
    assert meta["source"] == "inspect"
    assert meta["gpu"] is True and meta["description"] == "PyTorch with CUDA"
    assert meta["labels"]["maintainer"] == "ml-team" and meta["version"] == "2.3"
    assert by_id["python_3.11"]["category"] is None
    assert len(inspect_calls(standin_log)) == 3

    for _ in range(5):  # reads reuse the catalog: no more inspect runs
        assert call(portal, "GET", "/images", alice).status_code == 200
    assert len(inspect_calls(standin_log)) == 3


def test_filters(portal: RunningPortal, alice: dict[str, str]) -> None:
    r = call(portal, "GET", "/images", alice, category="compute")
    assert [i["id"] for i in r.json()["items"]] == ["compute--gromacs_2023"]
    r = call(portal, "GET", "/images", alice, q="cuda")
    assert [i["id"] for i in r.json()["items"]] == ["gpu--pytorch_2.3"]
    r = call(portal, "GET", "/images", alice, q="nothing-matches")
    assert r.json() == {"items": [], "total": 0, "scanned_at": r.json()["scanned_at"]}
    r = call(portal, "GET", "/images", alice, categroy="compute")
    assert r.status_code == 422 and "categroy" in r.json()["detail"]


def test_get_one_image_and_404(portal: RunningPortal, alice: dict[str, str]) -> None:
    r = call(portal, "GET", "/images/compute--gromacs_2023", alice)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["name"] == "gromacs"
    r = call(portal, "GET", "/images/no-such-image", alice)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found" and "no-such-image" in r.json()["detail"]


def test_reads_need_a_login(portal: RunningPortal) -> None:
    assert call(portal, "GET", "/images", {}).status_code == 401
    assert call(portal, "GET", "/images/python_3.11", {}).status_code == 401


def test_scan_is_for_admins_only(portal: RunningPortal, alice: dict[str, str]) -> None:
    r = call(portal, "POST", "/scan", alice)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_admin_scan_reports_changes_and_inspects_only_new_images(
    portal: RunningPortal,
    alice: dict[str, str],
    carol: dict[str, str],
    images: Path,
    standin_log: Path,
) -> None:
    call(portal, "GET", "/images", alice)  # the catalog exists (scanned once)
    before = len(inspect_calls(standin_log))
    (images / "compute" / "openfoam_11.sif").write_bytes(b"new image")
    (images / "python_3.11.sif").unlink()

    r = call(portal, "POST", "/scan", carol)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["added"], result["removed"], result["unchanged"]) == (1, 1, 2)
    assert result["total"] == 3 and result["inspect_calls"] == 1
    new_calls = inspect_calls(standin_log)[before:]
    assert [c[-1] for c in new_calls] == [str(images / "compute" / "openfoam_11.sif")]

    ids = {i["id"] for i in call(portal, "GET", "/images", alice).json()["items"]}
    assert ids == {"compute--gromacs_2023", "compute--openfoam_11", "gpu--pytorch_2.3"}
    assert call(portal, "GET", "/images/python_3.11", alice).status_code == 404
    again = call(portal, "POST", "/scan", carol).json()
    assert (again["added"], again["removed"], again["unchanged"]) == (0, 0, 3)
