"""Submitting and controlling jobs as the user, through a portal run as the service account."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import slurm_cli
from tests.integration.portals import PortalFactory
from tests.integration.service_portal import (
    ServicePortal,
    helper_path,
    run_as_service,
)

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "apptainer"
FINISHED = {"completed", "failed", "cancelled", "timeout"}


def shared_dir(prefix: str) -> Path:
    """A directory other users can reach (pytest's own tmp is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    directory.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def images() -> Iterator[Path]:
    directory = shared_dir("hpcportal-images-")
    (directory / "python_3.11.sif").write_bytes(b"not really an image")
    (directory / "python_3.11.sif").chmod(0o644)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def portal(images: Path, make_portal: PortalFactory) -> ServicePortal:
    return make_portal.service(
        {
            "HPCPORTAL_APPTAINER_IMAGE_DIRS": json.dumps([str(images)]),
            "HPCPORTAL_APPTAINER_COMMAND": str(STANDIN),
            "HPCPORTAL_APPTAINER_BINDS": json.dumps(["/tmp:/scratch"]),
            "HPCPORTAL_UPLOAD_MAX_BYTES": "1000",
        }
    )


def submit(
    portal: ServicePortal, headers: dict[str, str], body: dict[str, Any], **kw: Any
) -> httpx.Response:
    with portal.client() as c:
        return c.post("/api/v1/jobs", json=body, headers=headers, **kw)


def wait_finished(portal: ServicePortal, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    with portal.client() as c:
        while time.monotonic() < deadline:
            body = c.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
            job = body.get("job") or body.get("accounting") or {}
            if job.get("status") in FINISHED:
                return dict(body)
            time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish")


def output_of(portal: ServicePortal, headers: dict[str, str], job_id: int) -> str:
    with portal.client() as c:
        r = c.get(f"/api/v1/jobs/{job_id}/output", headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["data"])


# --- the boundary itself -------------------------------------------------------------


def test_service_account_alone_cannot_act_as_alice(conf: str, portal: ServicePortal) -> None:
    """Without the helper the service account is nobody: the kernel and Slurm say no."""
    private = Path("/home/alice/private-notes.txt")
    slurm_cli.run(conf, ["sh", "-c", f"umask 077; echo secret > {private}"], user="alice")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    assert run_as_service(["cat", str(private)]).returncode != 0
    env = slurm_cli.env_for(conf)
    sbatch = run_as_service(["sbatch", "--uid=alice", "--wrap=true"], env=env)
    assert sbatch.returncode != 0
    assert run_as_service(["sudo", "-n", "-u", "alice", "/bin/cat", str(private)]).returncode != 0
    as_root = run_as_service(
        ["sudo", "-n", "-u", "root", str(helper_path())], input='{"v":1,"op":"stat","path":"/"}\n'
    )
    assert as_root.returncode != 0 and "ok" not in as_root.stdout
    system = run_as_service(
        ["sudo", "-n", "-u", "daemon", str(helper_path())], input='{"v":1,"op":"stat","path":"/"}\n'
    )
    assert system.returncode == 126 and "refusing" in system.stdout


def test_job_runs_as_alice_bob_cannot_cancel_carol_can(
    portal: ServicePortal,
    alice: dict[str, str],
    bob: dict[str, str],
    carol: dict[str, str],
) -> None:
    r = submit(portal, alice, {"script": "#!/bin/bash\nid -un\nsleep 1\n", "name": "whoami"})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    wait_finished(portal, alice, job_id)
    assert output_of(portal, alice, job_id).strip() == "alice"
    out = Path(f"/home/alice/slurm-{job_id}.out")
    assert pwd.getpwuid(out.stat().st_uid).pw_name == "alice"

    long = submit(portal, alice, {"script": "#!/bin/bash\nsleep 300\n", "name": "long"}).json()
    with portal.client() as c:
        refused = c.post(f"/api/v1/jobs/{long['job_id']}/cancel", headers=bob)
        assert refused.status_code == 403
        assert "Access/permission denied" in refused.json()["detail"]
        allowed = c.post(f"/api/v1/jobs/{long['job_id']}/cancel", headers=carol)
        assert allowed.status_code == 200, allowed.text
        audit = c.get("/api/v1/audit", headers=carol, params={"target": f"job:{long['job_id']}"})
    actions = {(e["username"], e["action"], e["result"]) for e in audit.json()["items"]}
    assert ("bob", "job.cancel", "refused") in actions
    assert ("carol", "job.cancel", "ok") in actions
    assert ("alice", "job.submit", "ok") in actions


def test_hold_release_requeue_and_signal(
    portal: ServicePortal, conf: str, alice: dict[str, str]
) -> None:
    # A job that stays pending: it waits for a held job of alice's. (A dependency on a
    # job slurmctld no longer knows is refused from 23.02 on, "Job dependency problem";
    # 22.05 took it as satisfied: tests/fixtures/slurm/*/actions.)
    blocker = slurm_cli.sbatch(conf, "alice", "--hold", "-J", "ctl-blocker", "--wrap", "true")
    try:
        body = {"script": "#!/bin/bash\nsleep 300\n", "name": "ctl"}
        r = submit(portal, alice, {**body, "dependency": f"afterok:{blocker}"})
        assert r.status_code == 201, r.text
        job = r.json()
        with portal.client() as c:
            for action in ("hold", "release"):
                r = c.post(f"/api/v1/jobs/{job['job_id']}/{action}", headers=alice)
                assert r.status_code == 200, r.text
            bad = c.post(
                f"/api/v1/jobs/{job['job_id']}/signal", headers=alice, json={"signal": "NOPE"}
            )
            assert bad.status_code == 422
            assert c.post(f"/api/v1/jobs/{job['job_id']}/cancel", headers=alice).status_code == 200
            missing = c.post("/api/v1/jobs/99999999/cancel", headers=alice)
        assert missing.status_code == 404
    finally:
        slurm_cli.scancel(conf, blocker, missing_ok=True)


# --- what reaches Slurm ----------------------------------------------------------------

PAYLOADS = [
    "$(touch /tmp/hpcportal-pwned)",
    "`touch /tmp/hpcportal-pwned`",
    "a; touch /tmp/hpcportal-pwned",
    "--wrap=touch /tmp/hpcportal-pwned",
    "x\n#SBATCH --uid=0",
]


def test_hostile_values_change_nothing(
    portal: ServicePortal, conf: str, alice: dict[str, str]
) -> None:
    script = '#!/bin/bash\nprintf "%s\\n" "$HOSTILE"\n'
    for payload in PAYLOADS:
        name = payload.replace("\n", " ")
        body = {"script": script, "name": name, "environment": {"HOSTILE": payload}}
        r = submit(portal, alice, body)
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        assert r.json()["argv"][3] == f"--job-name={name}"
        stored = slurm_cli.run(conf, ["scontrol", "write", "batch_script", str(job_id), "-"])
        assert stored == script  # the script Slurm stored is exactly the one we sent
        shown = slurm_cli.json_of(conf, ["squeue", "--json", "--all"])["jobs"]
        assert [j["name"] for j in shown if j["job_id"] == job_id] == [name]
        wait_finished(portal, alice, job_id)
        assert output_of(portal, alice, job_id) == payload + "\n"
    assert not Path("/tmp/hpcportal-pwned").exists()
    bad = submit(portal, alice, {"script": script, "partition": "normal; touch /tmp/x"})
    assert bad.status_code == 422 and "partition" in bad.json()["detail"]
    newline = submit(portal, alice, {"script": script, "name": "a\n#SBATCH --uid=0"})
    assert newline.status_code == 422


def test_dry_run_shows_script_argv_verdict_and_conflicts(
    portal: ServicePortal, conf: str, alice: dict[str, str]
) -> None:
    before = slurm_cli.run(conf, ["squeue", "-h", "-u", "alice", "-o", "%i"]).split()
    script = "#!/bin/bash\n#SBATCH --partition=viz\n#SBATCH -c 1\nhostname\n"
    r = submit(
        portal,
        alice,
        {"script": script, "partition": "normal", "cpus_per_task": 2},
        params={"dry_run": "true"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["script"] == script
    assert "--partition=normal" in body["argv"] and "--cpus-per-task=2" in body["argv"]
    assert body["verdict"]["accepted"] is True and body["verdict"]["start_estimate"]
    assert {c["option"] for c in body["conflicts"]} == {"--partition", "--cpus-per-task"}
    refused = submit(
        portal, alice, {"script": script, "partition": "nosuch"}, params={"dry_run": "true"}
    )
    assert refused.json()["verdict"]["accepted"] is False
    assert "partition" in refused.json()["verdict"]["message"].lower()
    assert slurm_cli.run(conf, ["squeue", "-h", "-u", "alice", "-o", "%i"]).split() == before


def test_lost_response_retried_with_same_key_creates_one_job(
    portal: ServicePortal, conf: str, alice: dict[str, str]
) -> None:
    name = f"idem-{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex
    body = {"script": "#!/bin/bash\nsleep 20\n", "name": name}
    headers = {**alice, "Idempotency-Key": key}
    with (
        httpx.Client(base_url=portal.url, timeout=0.02) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        impatient.post("/api/v1/jobs", json=body, headers=headers)  # the answer is lost
    answers = [submit(portal, headers, body) for _ in range(3)]
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    assert len({a.json()["job_id"] for a in answers}) == 1
    assert any(a.json()["replayed"] for a in answers)
    queued = slurm_cli.run(conf, ["squeue", "-h", "-u", "alice", "-n", name, "-o", "%i"]).split()
    assert len(queued) == 1
    other = submit(portal, headers, {**body, "name": name + "-changed"})
    assert other.status_code == 409
    slurm_cli.scancel(conf, int(queued[0]))


def test_portal_secrets_never_reach_a_job(portal: ServicePortal, alice: dict[str, str]) -> None:
    r = submit(portal, alice, {"script": "#!/bin/bash\nenv\n", "environment": {"ASKED": "yes"}})
    job_id = r.json()["job_id"]
    wait_finished(portal, alice, job_id)
    env = output_of(portal, alice, job_id)
    assert "ASKED=yes" in env
    assert portal.secret not in env
    assert "HPCPORTAL_" not in env


# --- Apptainer, uploads, output ----------------------------------------------------------


def test_apptainer_job_runs_the_whole_script_inside_the_image(
    portal: ServicePortal, alice: dict[str, str], images: Path
) -> None:
    log = Path("/tmp") / f"apptainer-standin-{uuid.uuid4().hex[:8]}.log"
    log.touch()
    log.chmod(0o666)
    with portal.client() as c:
        listing = c.get("/api/v1/apptainer/images", headers=alice).json()["items"]
    image = next(i for i in listing if i["name"] == "python_3.11.sif")
    script = (
        "#!/bin/bash\n#SBATCH --job-name=in-image\necho before\n"
        "cat <<'APPTAINER_SCRIPT'\ninside heredoc\nAPPTAINER_SCRIPT\n"
        'APPTAINER_SCRIPT\necho "after marker $SHARED"\n'
    )
    body = {
        "script": script,
        "apptainer_image": image["id"],
        "gpus": 1,
        "partition": "gpu",
        "environment": {"APPTAINER_STANDIN_LOG": str(log), "SHARED": "kept"},
    }
    r = submit(portal, alice, body)
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert "#SBATCH --job-name=in-image" in r.json()["script"]
    wait_finished(portal, alice, job_id)
    out = output_of(portal, alice, job_id)
    assert "before" in out and "inside heredoc" in out and "after marker kept" in out
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    argv = calls[-1]["argv"] if isinstance(calls[-1], dict) else calls[-1]
    assert argv[0] == str(STANDIN)  # the stand-in records its own name first
    assert argv[1:5] == ["exec", "--nv", "--bind", "/tmp:/scratch"]
    assert argv[5] == str(images / "python_3.11.sif") and argv[6] == "bash"
    inner = Path(argv[7])
    assert inner.read_text() == script and pwd.getpwuid(inner.stat().st_uid).pw_name == "alice"
    log.unlink()


def test_uploads_become_job_inputs_and_bad_ones_write_nothing(
    portal: ServicePortal, alice: dict[str, str]
) -> None:
    area = Path("/home/alice/hpcportal/uploads")
    before = set(os.listdir(area)) if area.exists() else set()
    with portal.client() as c:
        too_big = c.post(
            "/api/v1/uploads", headers=alice, files={"files": ("big.bin", b"x" * 2000)}
        )
        sneaky = c.post(
            "/api/v1/uploads", headers=alice, files={"files": ("../../etc/passwd", b"root::0:0")}
        )
        assert (set(os.listdir(area)) if area.exists() else set()) == before
        ok = c.post(
            "/api/v1/uploads", headers=alice, files={"files": ("my data.csv", b"1,2\n3,4\n")}
        )
    assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]
    assert sneaky.status_code == 422 and "not allowed" in sneaky.json()["detail"]
    assert ok.status_code == 201, ok.text
    (uploaded,) = ok.json()
    path = Path(uploaded["path"])
    assert pwd.getpwuid(path.stat().st_uid).pw_name == "alice"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    script = '#!/bin/bash\ncat "$INPUT"\necho "$FILE_MY_DATA"\n'
    r = submit(portal, alice, {"script": script, "input_files": [uploaded["id"]]})
    assert r.status_code == 201, r.text
    wait_finished(portal, alice, r.json()["job_id"])
    assert output_of(portal, alice, r.json()["job_id"]) == f"1,2\n3,4\n{path}\n"
    missing = submit(portal, alice, {"script": script, "input_files": ["nope/x.csv"]})
    assert missing.status_code == 422


def test_output_follow_and_privacy(
    portal: ServicePortal, alice: dict[str, str], bob: dict[str, str]
) -> None:
    script = "#!/bin/bash\nfor i in 1 2 3; do echo line$i; sleep 1; done\n"
    job_id = submit(portal, alice, {"script": script}).json()["job_id"]
    events = []
    with (
        portal.client() as c,
        c.stream("GET", f"/api/v1/jobs/{job_id}/output/stream", headers=alice) as stream,
    ):
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            elif line.startswith("data: ") and events and events[-1] == "output":
                events.append(json.loads(line.removeprefix("data: "))["data"])
            if events and events[-1] == "end":
                break
    assert "".join(e for e in events if e not in ("output", "end")) == "line1\nline2\nline3\n"
    with portal.client() as c:
        assert c.get(f"/api/v1/jobs/{job_id}/output", headers=bob).status_code == 403
        eff = c.get(f"/api/v1/jobs/{job_id}/efficiency", headers=alice)
    assert eff.status_code == 200 and eff.json()["elapsed_seconds"] >= 2


def test_hostile_template_parameters_change_nothing(
    portal: ServicePortal, conf: str, alice: dict[str, str]
) -> None:
    """A template value travels shell-quoted: Slurm stores exactly the rendered script."""
    with portal.client() as c:
        listing = c.get("/api/v1/templates", headers=alice, params={"scope": "site"}).json()
        template = next(t for t in listing["items"] if t["slug"] == "python-script")
        for payload in PAYLOADS[:4]:
            code = f"print({payload!r})"
            params = {"parameters": {"code": code, "time": "5"}}
            rendered = c.post(
                f"/api/v1/templates/{template['id']}/render", headers=alice, json=params
            )
            assert rendered.status_code == 200, rendered.text
            r = c.post(f"/api/v1/templates/{template['id']}/submit", headers=alice, json=params)
            assert r.status_code == 201, r.text
            job_id = r.json()["job_id"]
            stored = slurm_cli.run(conf, ["scontrol", "write", "batch_script", str(job_id), "-"])
            assert stored == rendered.json()["script"] == r.json()["script"]
            wait_finished(portal, alice, job_id)
            with portal.client() as c2:
                out = c2.get(f"/api/v1/jobs/{job_id}/output", headers=alice).json()
            assert out["data"] == payload + "\n"
        newline = c.post(
            f"/api/v1/templates/{template['id']}/submit",
            headers=alice,
            json={"parameters": {"code": "x\n#SBATCH --uid=0"}},
        )
    assert newline.status_code == 422
    assert not Path("/tmp/hpcportal-pwned").exists()


def test_cli_submits_and_follows_output_with_an_api_token(
    portal: ServicePortal, alice: dict[str, str], tmp_path: Path
) -> None:
    """`hpcportal jobs` against the real portal, authenticated by a personal API token."""
    with portal.client() as c:
        created = c.post(
            "/api/v1/auth/api-tokens",
            headers=alice,
            json={"name": "cli", "scopes": ["read", "write"]},
        )
    assert created.status_code == 201, created.text
    env = {**os.environ, "HPCPORTAL_URL": portal.url, "HPCPORTAL_TOKEN": created.json()["token"]}
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho from-cli $GREETING\n")
    cli = [sys.executable, "-m", "hpcportal.cli.main", "jobs"]
    submitted = subprocess.run(
        [*cli, "submit", str(script), "--name", "cli-job", "--env", "GREETING=hi"],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split()[-1]
    assert submitted.stdout.startswith("Submitted batch job")
    followed = subprocess.run(
        [*cli, "output", job_id, "--follow"], env=env, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "from-cli hi\n"
    listed = subprocess.run(
        [*cli, "list", "--json"], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert listed.returncode == 0 and job_id in listed.stdout
    missing = subprocess.run(
        [*cli, "cancel", "99999999"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert missing.returncode == 1 and "Error:" in missing.stderr
