"""Sealing secrets at rest: round trip, the key file, and what must not open."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from hpcportal.config import Settings
from hpcportal.errors import Misconfigured
from hpcportal.services.secret_box import SecretBox, SecretUnreadable, box_for

PLACE = "interactive_sessions:0123456789abcdef:secret"


def _box(tmp_path: Path, name: str = "portal.key") -> SecretBox:
    return SecretBox.from_file(tmp_path / "secrets" / name)


def test_round_trip_and_the_stored_form(tmp_path: Path) -> None:
    box = _box(tmp_path)
    sealed = box.seal("Rot4ted1", PLACE)
    version, key_id, _ = sealed.split(":")
    assert (version, key_id) == ("v1", box.key_id) and len(key_id) == 8
    assert "Rot4ted1" not in sealed
    assert box.open(sealed, PLACE) == "Rot4ted1"
    # A fresh nonce each time: equal secrets do not look equal in the database.
    assert box.seal("Rot4ted1", PLACE) != sealed
    assert box.open(box.seal("", PLACE), PLACE) == ""


def test_the_key_file_is_made_private_and_read_again_by_the_next_process(
    tmp_path: Path,
) -> None:
    box = _box(tmp_path)
    folder, key = tmp_path / "secrets", tmp_path / "secrets" / "portal.key"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # Another replica (a new box from the same file) opens what this one sealed.
    again = SecretBox.from_file(key)
    assert again.key_id == box.key_id
    assert again.open(box.seal("token", PLACE), PLACE) == "token"
    assert [p.name for p in folder.iterdir()] == ["portal.key"]  # no temporary left


def test_replicas_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    key = tmp_path / "secrets" / "portal.key"
    boxes: list[SecretBox] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        boxes.append(SecretBox.from_file(key))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(boxes) == 8 and len({b.key_id for b in boxes}) == 1


def test_another_key_does_not_open(tmp_path: Path) -> None:
    sealed = _box(tmp_path, "a.key").seal("full1234", PLACE)
    other = _box(tmp_path, "b.key")
    with pytest.raises(SecretUnreadable, match="another key"):
        other.open(sealed, PLACE)
    # Even claiming to be the right key: the tag does not verify.
    forged = sealed.replace(sealed.split(":")[1], other.key_id)
    with pytest.raises(SecretUnreadable):
        other.open(forged, PLACE)


def test_altered_or_moved_values_do_not_open(tmp_path: Path) -> None:
    box = _box(tmp_path)
    sealed = box.seal("full1234", PLACE)
    body = sealed.rsplit(":", 1)[1]
    for i in (0, len(body) // 2, len(body) - 2):
        flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1 :]
        with pytest.raises(SecretUnreadable):
            box.open(sealed.rsplit(":", 1)[0] + ":" + flipped, PLACE)
    with pytest.raises(SecretUnreadable):
        box.open(sealed[:-6], PLACE)  # cut short
    # Copied to another session's row, or to the view-only column: refused.
    for place in (
        "interactive_sessions:fedcba9876543210:secret",
        "interactive_sessions:0123456789abcdef:view_secret",
    ):
        with pytest.raises(SecretUnreadable):
            box.open(sealed, place)
    # A value stored before sealing (plaintext) is not taken for a sealed one.
    for plain in ("full1234", "v1:", "v2:abcd:xyz", ""):
        with pytest.raises(SecretUnreadable):
            box.open(plain, PLACE)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "secrets" / "portal.key"
    _box(tmp_path)
    key.chmod(mode)
    with pytest.raises(Misconfigured, match="chmod 600") as refused:
        SecretBox.from_file(key)
    assert str(key) in refused.value.message


def test_a_key_folder_others_can_enter_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(Misconfigured, match="chmod 700"):
        SecretBox.from_file(folder / "portal.key")
    assert not (folder / "portal.key").exists()  # nothing written into an open folder


def test_a_key_file_of_another_account_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")  # the suite runs as root
    _box(tmp_path)
    key = tmp_path / "secrets" / "portal.key"
    os.chown(key, 65534, 65534)
    with pytest.raises(Misconfigured, match="not to the portal's account"):
        SecretBox.from_file(key)


def test_a_key_file_that_holds_no_key_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    key = folder / "portal.key"
    key.write_text("too short\n")
    key.chmod(0o600)
    with pytest.raises(Misconfigured, match="does not hold a key"):
        SecretBox.from_file(key)


def test_the_default_key_file_is_beside_the_sqlite_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'portal.db'}")
    assert settings.secret_key_path == tmp_path / "secrets" / "portal.key"
    chosen = Settings(
        database_url="postgresql+psycopg://u:p@127.0.0.1/db", secret_key_file=tmp_path / "k"
    )
    assert chosen.secret_key_path == tmp_path / "k"
    # One box per key file and process.
    assert box_for(tmp_path / "k") is box_for(tmp_path / "k")
