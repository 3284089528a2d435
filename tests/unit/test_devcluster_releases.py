"""Dev clusters of other Slurm releases: release table, roots, wrappers, configs.

No daemons and no debootstrap here: roots are small trees made in a temporary
directory, and the wrappers are run for real with the host's own loader and host
programs standing in for the root's binaries, so the scripts' quoting, environment
and program names are tested by executing them, not by reading them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcportal.cli.devcluster import format_status
from hpcportal.devcluster import DevCluster, DevClusterError
from hpcportal.devcluster.cluster import read_release
from hpcportal.devcluster.paths import Layout
from hpcportal.devcluster.releases import (
    RELEASES,
    dpkg_versions,
    installed_slurm_version,
    parse_release,
    release_of_version,
)
from hpcportal.devcluster.roots import (
    ROOTS_ENV,
    SlurmRoot,
    debootstrap_argv,
    ensure_self_link,
    mounts_below,
    resolve_in_root,
    root_for,
    roots_dir,
)
from hpcportal.devcluster.templates import (
    cluster_nodes,
    render_cgroup_conf,
    render_slurm_conf,
)
from hpcportal.devcluster.wrappers import (
    CLIENT_PROGRAMS,
    loader_command,
    render_client_wrapper,
    render_in_root,
    render_slurmstepd_wrapper,
    root_program,
    write_scripts,
)

HOST_LOADER = Path("/lib64/ld-linux-x86-64.so.2")
DPKG_STATUS = """\
Package: slurm-wlm
Status: install ok installed
Version: 24.11.5-4+deb13u1
Description: Simple Linux Utility for Resource Management
 continuation line: Version: 1.0 must not count

Package: slurmd
Status: deinstall ok config-files
Version: 23.02.1-1

Package: munge
Status: install ok installed
Version: 0.5.16-1.1~deb13u1
"""


def conf_value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(f"{key}="):
            return line.partition("=")[2]
    return None


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory whose parent everyone can traverse, so the dev cluster keeps it."""
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


@pytest.fixture
def fake_root(tmp_path: Path) -> SlurmRoot:
    """A root whose loader is the host's, whose ``squeue`` is /usr/bin/env and whose
    ``slurmstepd`` (behind Debian-style absolute alternatives symlinks, like ``slurmd``)
    is bash, so running them shows their environment and the name they were given."""
    root = tmp_path / "root"
    (root / "usr/lib64").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(HOST_LOADER)
    (root / "usr/bin/squeue").write_bytes(Path("/usr/bin/env").read_bytes())
    (root / "usr/bin/squeue").chmod(0o755)
    (root / "usr/sbin/slurmd-wlm").write_text("the root's slurmd\n")
    (root / "etc/alternatives/slurmd").symlink_to("/usr/sbin/slurmd-wlm")
    (root / "usr/sbin/slurmd").symlink_to("/etc/alternatives/slurmd")
    (root / "usr/sbin/slurmstepd-wlm").write_bytes(Path("/bin/bash").read_bytes())
    (root / "usr/sbin/slurmstepd-wlm").chmod(0o755)
    (root / "etc/alternatives/slurmstepd").symlink_to("/usr/sbin/slurmstepd-wlm")
    (root / "usr/sbin/slurmstepd").symlink_to("/etc/alternatives/slurmstepd")
    return SlurmRoot(root)


# ------------------------------------------------------------------ releases
def test_supported_releases_and_their_suites() -> None:
    assert {name: r.suite for name, r in RELEASES.items()} == {
        "22.05": None,
        "24.11": "trixie",
        "26.05": "sid",
    }
    assert not parse_release("22.05").from_root
    assert parse_release(" 24.11\n").from_root


def test_unknown_release_names_the_supported_ones() -> None:
    with pytest.raises(DevClusterError, match=r"22\.05, 24\.11, 26\.05"):
        parse_release("23.02")


@pytest.mark.parametrize(
    ("version", "release"),
    [
        ("24.11.5-4+deb13u1", "24.11"),
        ("26.05.5-1", "26.05"),
        ("1:25.11.0-1", "25.11"),
        ("22.05.8-4+deb12u3", "22.05"),
        ("garbage", None),
    ],
)
def test_release_of_a_debian_version(version: str, release: str | None) -> None:
    assert release_of_version(version) == release


def test_dpkg_status_counts_only_installed_packages() -> None:
    assert dpkg_versions(DPKG_STATUS) == {
        "slurm-wlm": "24.11.5-4+deb13u1",
        "munge": "0.5.16-1.1~deb13u1",
    }


def test_installed_version_of_a_root(tmp_path: Path) -> None:
    assert installed_slurm_version(tmp_path) is None
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    assert installed_slurm_version(tmp_path) == "24.11.5-4+deb13u1"


# --------------------------------------------------------------------- roots
def test_roots_dir_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    assert roots_dir() == Path("/var/cache/hpcportal/roots")
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    assert root_for(parse_release("26.05")).path == tmp_path / "sid"
    with pytest.raises(DevClusterError, match="from the host"):
        root_for(parse_release("22.05"))


def test_alternatives_resolve_inside_the_root_never_on_the_host(fake_root: SlurmRoot) -> None:
    resolved = resolve_in_root(fake_root.path, "/usr/sbin/slurmd")
    assert resolved == fake_root.path / "usr/sbin/slurmd-wlm"
    assert fake_root.program("slurmd") == resolved
    assert fake_root.program("squeue") == fake_root.path / "usr/bin/squeue"
    assert fake_root.program("sbatch") is None


def test_a_symlink_loop_in_a_root_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("/b")
    (tmp_path / "b").symlink_to("/a")
    with pytest.raises(DevClusterError, match="too many symlinks"):
        resolve_in_root(tmp_path, "a")


def test_root_paths(fake_root: SlurmRoot) -> None:
    assert fake_root.plugin_dir == fake_root.path / "usr/lib/x86_64-linux-gnu/slurm-wlm"
    # The plugin dir comes first: it holds libslurmfull, which the binaries' RUNPATH
    # would otherwise find on the host (22.05's).
    assert fake_root.library_path[0] == fake_root.plugin_dir
    assert not fake_root.ready


def test_self_link_makes_the_host_path_valid_inside_the_root(tmp_path: Path) -> None:
    root = SlurmRoot(tmp_path / "roots" / "trixie")
    root.path.mkdir(parents=True)
    ensure_self_link(root)
    ensure_self_link(root)  # idempotent
    link = root.path / str(root.path).lstrip("/")
    assert link.is_symlink()
    assert os.readlink(link) == "/"


def test_debootstrap_command() -> None:
    argv = debootstrap_argv("trixie", Path("/r/trixie.partial"), None)
    assert argv == [
        "debootstrap",
        "--variant=minbase",
        "--include=slurm-wlm,slurm-client,slurmdbd,munge",
        "trixie",
        "/r/trixie.partial",
    ]
    mirror = "http://mirror.invalid/debian"
    assert debootstrap_argv("sid", Path("/r/sid.partial"), mirror)[-1] == mirror


def test_mounts_below() -> None:
    assert Path("/proc") in mounts_below(Path("/"))
    assert mounts_below(Path("/nonexistent/hpcportal")) == []


# ------------------------------------------------------------------ wrappers
def test_client_wrapper_runs_the_roots_program_with_the_clusters_config(
    fake_root: SlurmRoot, tmp_path: Path
) -> None:
    layout = Layout(tmp_path / "cluster dir")
    program = fake_root.program("squeue")
    assert program is not None
    wrapper = tmp_path / "squeue"
    wrapper.write_text(render_client_wrapper(fake_root, program, "squeue", layout, "24.11"))
    wrapper.chmod(0o755)
    # The caller's SLURM_CONF (say the host's 22.05 one) must not leak into a 24.11 client.
    env = {"PATH": "/usr/bin:/bin", "SLURM_CONF": "/etc/slurm/slurm.conf"}
    out = subprocess.run(
        [str(wrapper), "--ignore-environment", "ARG=two words", "printenv", "ARG"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "two words\n"
    out = subprocess.run([str(wrapper)], env=env, capture_output=True, text=True, check=True)
    assert f"SLURM_CONF={layout.slurm_conf}\n" in out.stdout
    # The cluster's clients come first, and sbatch hands that PATH to the job: srun
    # inside a job is this release's, not the host's.
    assert f"PATH={layout.bin}:/usr/bin:/bin\n" in out.stdout
    assert "LD_LIBRARY_PATH" not in out.stdout  # the library path is the loader's, not env


def test_slurmstepd_wrapper_keeps_the_name_slurm_picks_its_role_by(
    fake_root: SlurmRoot, tmp_path: Path
) -> None:
    program = root_program(fake_root, "slurmstepd")
    assert program == fake_root.path / "usr/sbin/slurmstepd-wlm"
    wrapper = tmp_path / "slurmstepd"
    wrapper.write_text(render_slurmstepd_wrapper(fake_root, program, "24.11"))
    wrapper.chmod(0o700)
    # bash -c with no further arguments prints its argv[0] as $0.
    out = subprocess.run(
        [str(wrapper), "-c", "echo $0"], capture_output=True, text=True, check=True
    ).stdout
    assert out == "slurmstepd\n"
    assert loader_command(fake_root, program, "slurmstepd")[3:5] == ("--argv0", "slurmstepd")


def test_in_root_launcher_binds_host_paths_then_chroots(fake_root: SlurmRoot) -> None:
    cluster = Path("/srv/a cluster")
    text = render_in_root(fake_root, cluster, "24.11")
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    lines = text.splitlines()
    assert "unshare --mount --propagation private" in text
    binds = [line for line in lines if line.startswith("bind_dir ")]
    assert binds == [
        'bind_dir /run/mysqld "$root"/run/mysqld',
        'bind_dir /run/mysqld "$root"/run/mariadbd',  # sid's client library looks here
        "bind_dir '/srv/a cluster' \"$root\"'/srv/a cluster'",
    ]
    assert "for file in /etc/passwd /etc/group /etc/hosts; do" in lines
    assert lines[-1] == 'exec chroot "$root" "$@"'


def test_write_scripts_wraps_the_clients_the_root_has(fake_root: SlurmRoot, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "cluster")
    assert write_scripts(layout, fake_root, "24.11") is True
    assert sorted(p.name for p in layout.bin.iterdir()) == ["squeue"]
    assert "squeue" in CLIENT_PROGRAMS
    assert (layout.bin / "squeue").stat().st_mode & 0o777 == 0o755
    assert layout.in_root.stat().st_mode & 0o777 == 0o700
    assert layout.slurmstepd_wrapper.stat().st_mode & 0o777 == 0o700
    assert write_scripts(layout, fake_root, "24.11") is False  # unchanged: no restart


# ------------------------------------------------------------------- configs
def test_slurm_conf_of_a_root_release_names_its_plugins() -> None:
    layout = Layout(Path("/srv/dc"))
    nodes = cluster_nodes(include_gpu=True)
    host = render_slurm_conf(layout, "h", nodes)
    assert conf_value(host, "PluginDir") is None  # 22.05: unchanged
    plugins = Path("/var/cache/hpcportal/roots/trixie/usr/lib/x86_64-linux-gnu/slurm-wlm")
    rooted = render_slurm_conf(layout, "h", nodes, root_plugin_dir=plugins)
    assert conf_value(rooted, "PluginDir") == str(plugins)
    assert conf_value(render_cgroup_conf(), "CgroupPlugin") == "disabled"


def test_release_is_recorded_per_directory(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert read_release(layout).name == "22.05"
    layout.etc.mkdir()
    layout.release_file.write_text("26.05\n")
    assert read_release(layout).name == "26.05"


def test_a_root_release_runs_its_daemons_and_clients_through_the_cluster(
    open_dir: Path,
) -> None:
    cluster = DevCluster(open_dir / "c", release="24.11")
    assert cluster.bin_dir == cluster.layout.bin
    assert cluster.env["PATH"].split(os.pathsep)[0] == str(cluster.layout.bin)
    launcher = str(cluster.layout.in_root)
    daemons = cluster._daemons()
    argvs = [d.argv for d in daemons]
    assert argvs[0][0] == "runuser"  # munged is the host's, with the cluster's key
    assert [a[:2] for a in argvs[1:3]] == [(launcher, "slurmdbd"), (launcher, "slurmctld")]
    slurmds = daemons[3:]
    root = cluster.slurm_root
    assert root is not None
    for slurmd in slurmds:  # on the host through the root's loader, with its slurmstepd
        assert slurmd.argv[0] == str(root.loader)
        assert slurmd.program == "ld-linux-x86-64.so.2"
        assert slurmd.argv[-2:] == ("-d", str(cluster.layout.slurmstepd_wrapper))
        assert slurmd.argv[3:5] == ("--argv0", "slurmd")
    # Two slurmds are told apart by their node, as on the host's release.
    assert slurmds[0].match_args[-2:] == ("-N", "node001")

    host = DevCluster(open_dir / "h")
    assert host.release.name == "22.05"
    assert host.bin_dir is None
    assert [d.argv[0] for d in host._daemons()[1:3]] == ["slurmdbd", "slurmctld"]


def test_up_refuses_another_release_in_a_used_directory(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("up checks for root before anything else")
    layout = Layout(open_dir)
    layout.etc.mkdir()
    layout.slurm_conf.write_text("ClusterName=hpcdev\n")  # a 22.05 cluster was here
    with pytest.raises(DevClusterError, match=r"holds a Slurm 22\.05 cluster"):
        DevCluster(open_dir, release="24.11").up()
    assert not layout.release_file.exists()


def test_status_text_names_the_release_and_the_clients(open_dir: Path) -> None:
    report = {
        "ok": True,
        "dir": str(open_dir),
        "slurm_conf": f"{open_dir}/etc/slurm.conf",
        "release": "24.11",
        "slurm_version": "slurm-wlm 24.11.5",
        "bin_dir": f"{open_dir}/bin",
        "components": [],
        "nodes": [],
        "users": [],
        "notes": [],
    }
    text = format_status(report)
    assert "slurm: 24.11 (slurm-wlm 24.11.5)" in text
    assert f"export HPCPORTAL_SLURM_BIN_DIR={open_dir}/bin" in text
    assert "not answering" in format_status({**report, "slurm_version": None})
