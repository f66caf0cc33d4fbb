"""shared.pii: per-subject data keys, wrapped by a rotatable master key; sealed fields; blind index."""
from __future__ import annotations

import base64
import os
import stat

import pytest

from shared import pii

OLD, NEW = os.urandom(32), os.urandom(32)


def test_a_sealed_field_opens_with_its_subjects_key_only():
    # given a resident's data key and their sealed phone
    key = pii.new_data_key()
    sealed = pii.seal(key, "r-1", b"13800000000")
    # then it opens with that key for that subject, and not with another key or for another subject
    assert pii.unseal(key, "r-1", sealed) == b"13800000000"
    assert b"13800000000" not in sealed
    with pytest.raises(pii.KeyProblem):
        pii.unseal(pii.new_data_key(), "r-1", sealed)
    with pytest.raises(pii.KeyProblem):
        pii.unseal(key, "r-2", sealed)


def test_a_wrapped_data_key_opens_for_its_subject_and_names_its_master_key():
    ring = pii.Keyring.of(NEW)
    key = pii.new_data_key()
    wrapped = ring.wrap("r-1", key)
    assert wrapped.key_id == pii.key_id(NEW) and key not in wrapped.blob
    assert ring.unwrap("r-1", wrapped) == key
    with pytest.raises(pii.KeyProblem, match="not its own"):
        ring.unwrap("r-2", wrapped)  # copied onto another subject
    with pytest.raises(pii.KeyProblem, match="not configured"):
        pii.Keyring.of(os.urandom(32)).unwrap("r-1", wrapped)


def test_a_rotation_rewraps_under_the_new_key_and_the_old_key_can_then_go():
    # given a key wrapped by the old master key
    key = pii.new_data_key()
    old_wrapped = pii.Keyring.of(OLD).wrap("r-1", key)
    # when the new key is current and the old one still accepted: it reads, and rewraps
    during = pii.Keyring.of(NEW, OLD)
    assert during.unwrap("r-1", old_wrapped) == key
    rewrapped = during.rewrap("r-1", old_wrapped)
    assert rewrapped.key_id == pii.key_id(NEW)
    assert during.rewrap("r-1", rewrapped) is rewrapped  # already current: untouched
    # then with the old key gone, the rewrapped key still opens, the old wrapping does not
    after = pii.Keyring.of(NEW)
    assert after.unwrap("r-1", rewrapped) == key
    with pytest.raises(pii.KeyProblem):
        after.unwrap("r-1", old_wrapped)


def test_the_blind_index_is_equal_for_equal_values_and_keyed():
    key, other = pii.new_data_key(), pii.new_data_key()
    number = "110101199003077777"
    assert pii.blind_index(key, "id_number", number) == pii.blind_index(key, "id_number", number)
    assert pii.blind_index(key, "id_number", number) != pii.blind_index(key, "id_number", number[:-1] + "8")
    assert pii.blind_index(key, "id_number", "1") != pii.blind_index(key, "phone", "1")
    assert pii.blind_index(key, "id_number", "1") != pii.blind_index(other, "id_number", "1")


def test_the_keyring_from_the_environment_or_a_file(tmp_path):
    one = base64.b64encode(NEW).decode()
    assert pii.from_env({"CORDON_MASTER_KEY": one}).current == pii.key_id(NEW)
    path = tmp_path / "master.key"
    path.write_text(f"# rotated 2026-11-30\n{one}\n{base64.b64encode(OLD).decode()}\n")
    ring = pii.from_env({"CORDON_MASTER_KEY_FILE": str(path)})
    assert ring.current == pii.key_id(NEW) and set(ring.keys) == {pii.key_id(NEW), pii.key_id(OLD)}
    with pytest.raises(pii.NoMasterKey):
        pii.from_env({})
    with pytest.raises(pii.KeyProblem, match="16 bytes"):
        pii.from_env({"CORDON_MASTER_KEY": base64.b64encode(os.urandom(16)).decode()})
    with pytest.raises(pii.KeyProblem, match="not base64"):
        pii.from_env({"CORDON_MASTER_KEY": "not a key!"})


def test_cordon_up_makes_a_secret_key_file_once(tmp_path):
    path = pii.ensure_key_file(tmp_path / "auth" / "master.key")
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pii.ensure_key_file(path).read_text() == first  # never replaced
    assert pii.from_env({"CORDON_MASTER_KEY_FILE": str(path)}).current
