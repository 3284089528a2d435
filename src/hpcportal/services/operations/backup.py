"""``hpcportal cluster backup``, ``restore`` and ``backups``: the portal's state in one folder.

A backup is a folder ``hpcportal-<UTC time>`` in ``backup_dir`` holding the database
dump (``db_dump.py``), the configuration (the TOML file in force, ``cluster_config.yaml``
when configured), the secrets (``sources_of``), and every site apps folder
(``app_dirs``), with a manifest of checksums (``manifest.py``). Job templates are
rows of the database, so the dump carries them.
It is written under a hidden ``.partial`` name and renamed when complete, so a backup
that exists is whole. Folders and files are private (0700/0600): a backup holds the
secret key.

``restore`` changes nothing unless the backup verifies (every checksum) and fits this
portal (its Alembic revision is one the installed code knows, its dump is for this
database engine). It then keeps the current state aside (``backup_dir/aside/<time>``,
itself a manifest-checked folder), restores, checks the restored tables against the
manifest's checksums, and puts the kept state back if any step fails. Run it with the
portal servers stopped: a server writing meanwhile would mix old and new rows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine

from hpcportal import __version__
from hpcportal.config import Settings
from hpcportal.config_sources import config_file, secrets_dirs
from hpcportal.db.migrate import alembic_config, current_revision
from hpcportal.db.session import normalise_url
from hpcportal.db.sqlite_file import COMPANIONS, sqlite_path
from hpcportal.services.node_tls import CLIENT_CERT, CLIENT_KEY
from hpcportal.services.operations.db_dump import (
    Dump,
    DumpFailed,
    backend,
    checksum_url,
    dump_database,
    load_database,
    portal_tables,
)
from hpcportal.services.operations.manifest import (
    MANIFEST,
    BackupCorrupt,
    Entry,
    Kind,
    Manifest,
    TableChecksum,
    Tree,
    entry_for,
    read_manifest,
    verify,
    write_manifest,
)
from hpcportal.services.signing_key import FILE_NAME as SIGNING_KEY

PREFIX = "hpcportal-"
ASIDE = "aside"

__all__ = [
    "BackupCorrupt",
    "BackupInfo",
    "BackupRefused",
    "RestoreFailed",
    "Sources",
    "create_backup",
    "list_backups",
    "restore_backup",
    "sources_of",
]


class BackupRefused(Exception):
    """The backup or restore cannot start (nothing was changed); the message says why."""


class RestoreFailed(Exception):
    """A restore step failed; the message says whether the kept state was put back."""


@dataclass(frozen=True)
class Sources:
    """The files a backup takes besides the database, as absolute paths."""

    config_files: tuple[Path, ...]
    secret_files: tuple[Path, ...]
    app_dirs: tuple[Path, ...]


@dataclass(frozen=True)
class BackupInfo:
    """A backup folder and its manifest (None with ``error`` when unreadable)."""

    path: Path
    manifest: Manifest | None
    error: str | None = None

    @property
    def size(self) -> int:
        return sum(e.size for e in self.manifest.entries) if self.manifest else 0


def sources_of(settings: Settings, cluster_config: Path | None = None) -> Sources:
    """What this server's backup holds: its config file(s), secrets and site apps.

    Secrets: the sealing key and the node TLS identity beside it, the stored login
    signing key, ``jwt_secret_file`` and ``database_password_file`` when set, and the
    files of the secrets folder (``/etc/hpcportal/secrets``; not systemd's
    ``$CREDENTIALS_DIRECTORY``, which systemd fills from elsewhere at each start).
    """
    configs = [p.absolute() for p in (config_file(), cluster_config) if p is not None]
    key = settings.secret_key_path.absolute()
    secrets = [key, key.parent / CLIENT_KEY, key.parent / CLIENT_CERT, key.parent / SIGNING_KEY]
    secrets += [p for p in (settings.jwt_secret_file, settings.database_password_file) if p]
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    for folder in secrets_dirs():
        if credentials is None or folder != Path(credentials):
            secrets += sorted(p for p in folder.iterdir() if p.is_file())
    unique = list(dict.fromkeys(p.absolute() for p in secrets))
    return Sources(tuple(configs), tuple(unique), tuple(p.absolute() for p in settings.app_dirs))


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _revision(url: str) -> str | None:
    engine = create_engine(normalise_url(url))
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def _snapshot(
    settings: Settings,
    folder: Path,
    files: Sequence[tuple[Path, Kind]],
    trees: Sequence[Path],
    now: datetime,
    *,
    database_may_be_absent: bool = False,
) -> Manifest:
    """Dump the database and copy ``files`` and ``trees`` into ``folder``; the manifest."""
    _private_dir(folder / "database")
    entries: list[Entry] = []
    absent: list[str] = []
    db_file = sqlite_path(settings.database_url)
    dump: Dump | None = None
    if database_may_be_absent and db_file is not None and not db_file.exists():
        absent.append(str(db_file))
    else:
        dump = dump_database(settings.database_url, folder / "database")
        entries.append(entry_for(folder, dump.file, "database", None))
    revision = _revision(settings.database_url) if dump is not None else None
    for index, (source, kind) in enumerate(files):
        if not source.is_file():
            absent.append(str(source))
            continue
        copy = folder / kind / f"{index}-{source.name}"
        _private_dir(copy.parent)
        shutil.copy2(source, copy)
        entries.append(entry_for(folder, copy, kind, source))
    tree_list: list[Tree] = []
    for index, source in enumerate(trees):
        if not source.is_dir():
            absent.append(str(source))
            continue
        copy_root = folder / "apps" / str(index)
        shutil.copytree(source, copy_root, symlinks=False)
        tree_list.append(
            Tree(dir=copy_root.relative_to(folder).as_posix(), source=str(source), kind="app")
        )
        for path in sorted(copy_root.rglob("*")):
            if path.is_file():
                original = source / path.relative_to(copy_root)
                entries.append(entry_for(folder, path, "app", original))
    tables = None
    if dump is not None and dump.tables is not None:
        tables = {n: TableChecksum(rows=t.rows, sha256=t.sha256) for n, t in dump.tables.items()}
    manifest = Manifest(
        portal_version=__version__,
        created_at=now,
        alembic_revision=revision,
        database_backend=backend(settings.database_url),
        database_method=None if dump is None else dump.method,
        tables=tables,
        entries=entries,
        trees=tree_list,
        absent=absent,
    )
    write_manifest(folder, manifest)
    return manifest


def _file_sources(sources: Sources) -> list[tuple[Path, Kind]]:
    return [(p, "config") for p in sources.config_files] + [
        (p, "secret") for p in sources.secret_files
    ]


def create_backup(
    settings: Settings, backup_dir: Path, sources: Sources, now: datetime | None = None
) -> BackupInfo:
    """Write a complete backup into ``backup_dir``; ``BackupRefused`` if a dump fails."""
    now = now or datetime.now(UTC)
    _private_dir(backup_dir)
    name = PREFIX + _stamp(now)
    final = backup_dir / name
    suffix = 1
    while final.exists():
        suffix += 1
        final = backup_dir / f"{name}-{suffix}"
    partial = backup_dir / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    _private_dir(partial)
    try:
        manifest = _snapshot(settings, partial, _file_sources(sources), sources.app_dirs, now)
    except DumpFailed as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupRefused(str(exc)) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(final)
    return BackupInfo(final, manifest)


def list_backups(backup_dir: Path) -> list[BackupInfo]:
    """Every finished backup in ``backup_dir``, oldest first (unreadable ones with why)."""
    if not backup_dir.is_dir():
        return []
    found: list[BackupInfo] = []
    for path in backup_dir.iterdir():
        if not path.is_dir() or not path.name.startswith(PREFIX):
            continue
        try:
            found.append(BackupInfo(path, read_manifest(path)))
        except BackupCorrupt as exc:
            found.append(BackupInfo(path, None, "; ".join(exc.problems)))
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(
        found, key=lambda b: (b.manifest.created_at if b.manifest else epoch, b.path.name)
    )


def _known_revision(revision: str | None) -> bool:
    if revision is None:
        return True
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _check_fits(settings: Settings, path: Path, manifest: Manifest) -> None:
    if not _known_revision(manifest.alembic_revision):
        raise BackupRefused(
            f"backup {path} is of database revision {manifest.alembic_revision}, which this "
            f"portal ({__version__}) does not know: restore it with the portal version "
            f"{manifest.portal_version} that made it"
        )
    here = backend(settings.database_url)
    if manifest.database_method is not None and manifest.database_backend != here:
        raise BackupRefused(
            f"backup {path} holds a {manifest.database_backend} database and this portal "
            f"uses {here}: restore it on a server configured for {manifest.database_backend}"
        )


def _write_file(source: Path, data_file: Path, mode: int | None) -> None:
    """Put ``data_file``'s bytes at ``source`` atomically (a temporary file renamed)."""
    source.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = source.with_name(f".{source.name}.restoring")
    shutil.copyfile(data_file, temporary)
    temporary.chmod(0o600 if mode is None else mode)
    os.replace(temporary, source)


def _replace_tree(source: Path, copy: Path) -> None:
    """Make ``source`` hold exactly ``copy``'s files (built beside it, then swapped)."""
    building = source.with_name(f".{source.name}.restoring")
    old = source.with_name(f".{source.name}.replaced")
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(copy, building)
    if source.exists():
        source.rename(old)
    building.rename(source)
    shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path, *, with_companions: bool) -> None:
    """Remove what a rollback found absent before; a path that cannot exist is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        for companion in COMPANIONS if with_companions else ():  # the SQLite file's WAL
            Path(f"{path}{companion}").unlink(missing_ok=True)
    except NotADirectoryError:
        pass  # a parent is a file: the path does not exist


def _apply(settings: Settings, root: Path, manifest: Manifest) -> None:
    """Restore everything ``manifest`` lists from ``root``; raises at the first failure."""
    for entry in manifest.entries:
        if entry.kind == "database" and manifest.database_method is not None:
            load_database(settings.database_url, root / entry.file, manifest.database_method)
            if manifest.tables is not None:
                expected = {n: (t.rows, t.sha256) for n, t in manifest.tables.items()}
                restored = checksum_url(settings.database_url)
                ours = set(expected) | set(portal_tables(restored, ""))
                if {n: (t.rows, t.sha256) for n, t in restored.items() if n in ours} != expected:
                    raise RestoreFailed("the restored tables do not match the backup's checksums")
    in_trees = {t.dir for t in manifest.trees}
    for entry in manifest.entries:
        if entry.source is not None and not any(entry.file.startswith(d + "/") for d in in_trees):
            _write_file(Path(entry.source), root / entry.file, entry.mode)
    for tree in manifest.trees:
        _replace_tree(Path(tree.source), root / tree.dir)
    database_file = sqlite_path(settings.database_url)
    for path in manifest.absent:
        _remove(Path(path), with_companions=Path(path) == database_file)


@dataclass(frozen=True)
class RestoreResult:
    restored: Path
    aside: Path
    manifest: Manifest


def restore_backup(
    settings: Settings, backup: Path, backup_dir: Path, now: datetime | None = None
) -> RestoreResult:
    """Verify ``backup``, keep the current state aside, restore; roll back on failure.

    ``BackupCorrupt`` or ``BackupRefused``: nothing was changed. ``RestoreFailed``: the
    restore began and failed; its message says the kept state was put back (or, if even
    that failed, where it is).
    """
    manifest = verify(backup)
    _check_fits(settings, backup, manifest)
    now = now or datetime.now(UTC)
    aside = backup_dir / ASIDE / _stamp(now)
    suffix = 1
    while aside.exists():
        suffix += 1
        aside = backup_dir / ASIDE / f"{_stamp(now)}-{suffix}"
    _private_dir(aside.parent)
    files = [(Path(e.source), e.kind) for e in manifest.entries if e.source and e.kind != "app"]
    trees = [Path(t.source) for t in manifest.trees]
    try:
        kept = _snapshot(settings, aside, files, trees, now, database_may_be_absent=True)
    except DumpFailed as exc:
        raise BackupRefused(
            f"the current state could not be kept aside, so nothing was restored: {exc}"
        ) from exc
    try:
        _apply(settings, backup, manifest)
    except Exception as exc:
        try:
            _apply(settings, aside, kept)
        except Exception as again:
            raise RestoreFailed(
                f"restoring {backup} failed ({exc}), and putting the previous state back "
                f"failed too ({again}); that state is kept in {aside}"
            ) from again
        raise RestoreFailed(
            f"restoring {backup} failed ({exc}); the previous state was put back "
            f"(a copy stays in {aside})"
        ) from exc
    return RestoreResult(backup, aside, manifest)


def verify_backup(path: Path) -> Manifest:
    """``manifest.verify``: every file of the backup against its manifest."""
    return verify(path)


__all__ += ["MANIFEST", "RestoreResult", "verify_backup"]
