"""Personal data at rest: per-subject data keys (AES-256-GCM), wrapped by a rotatable master key.

Crypto-shredding: each person (a resident, later a visitor) has their own random 32-byte data key;
their personal fields are sealed with it. The data key is stored only *wrapped* (encrypted with
the master key, AES-GCM, the subject as associated data: a wrapped key copied onto another
subject does not open). Deleting a subject's data key makes everything sealed with it unreadable.

The master key comes from the environment (``CORDON_MASTER_KEY``, base64 of 32 bytes) or a file
(``CORDON_MASTER_KEY_FILE``: one base64 key a line, the first the current one, the others earlier
keys still accepted for reading while a rotation re-wraps the data keys). Every wrapped key names
the master key that wrapped it by its :func:`key_id` (a fingerprint, not a secret), so a rotation
is: put the new key first, keep the old ones after it, re-wrap (:meth:`Keyring.rewrap`) every data
key whose id is not the current one, then drop the old lines.

Equality look-ups on sealed values (is this ID number registered?) use a keyed hash
(:func:`blind_index`): HMAC-SHA256 with an index key, a random key stored wrapped by the master key
like a data key: the hash says nothing without it, and a rotation (which re-wraps it) keeps it.

Pure: no I/O but :func:`from_env` reading the named file; randomness from ``os.urandom``.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_WRAP = b"cordon.pii.wrap.v1\0"
_SEAL = b"cordon.pii.seal.v1\0"
_INDEX = b"cordon.pii.index.v1"
_ID = b"cordon.pii.key-id.v1"


class KeyProblem(Exception):
    """A key is missing, malformed or does not open what it should (the message says which)."""


class NoMasterKey(KeyProblem):
    """No master key is configured."""


@dataclass(frozen=True, slots=True)
class Wrapped:
    """A data key wrapped by the master key ``key_id``: nonce + AES-GCM ciphertext and tag."""

    key_id: str
    blob: bytes


def key_id(master: bytes) -> str:
    """The id of a master key: 16 hex characters of a keyed fingerprint (not the key, not
    reversible), stored beside every key it wraps."""
    return hmac.new(master, _ID, hashlib.sha256).hexdigest()[:16]


def parse_key(text: str, where: str = "CORDON_MASTER_KEY") -> bytes:
    """A master key from its base64 text; :class:`KeyProblem` unless it is exactly 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyProblem(f"{where} is not base64 (make one: head -c 32 /dev/urandom | base64)") from None
    if len(raw) != KEY_BYTES:
        raise KeyProblem(f"{where} holds {len(raw)} bytes; a master key is {KEY_BYTES} bytes, base64")
    return raw


def new_master_key() -> str:
    """A new random master key, base64 (what ``cordon up`` writes on first start)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


@dataclass(frozen=True)
class Keyring:
    """The master keys: ``current`` wraps, every key of ``keys`` (by id) unwraps."""

    current: str
    keys: Mapping[str, bytes]

    @classmethod
    def of(cls, *masters: bytes) -> "Keyring":
        """A keyring whose first key is the current one, the rest accepted for reading."""
        if not masters:
            raise NoMasterKey("a keyring needs at least one master key")
        return cls(current=key_id(masters[0]), keys={key_id(m): m for m in masters})

    def wrap(self, subject: str, data_key: bytes) -> Wrapped:
        """``data_key`` wrapped by the current master key, bound to ``subject``."""
        nonce = os.urandom(NONCE_BYTES)
        blob = _master(self.keys[self.current]).encrypt(nonce, data_key, _WRAP + subject.encode())
        return Wrapped(self.current, nonce + blob)

    def unwrap(self, subject: str, wrapped: Wrapped) -> bytes:
        """The data key, or :class:`KeyProblem` (its master key is not in the keyring, or the blob
        was altered or belongs to another subject)."""
        master = self.keys.get(wrapped.key_id)
        if master is None:
            raise KeyProblem(f"the data key of {subject} is wrapped by master key {wrapped.key_id}, "
                            "which is not configured (CORDON_MASTER_KEY_FILE: keep old keys until a "
                            "rotation has re-wrapped everything)")
        try:
            return _open(_master(master), wrapped.blob, _WRAP + subject.encode())
        except InvalidTag:
            raise KeyProblem(f"the wrapped data key of {subject} does not open (altered, or not its own)") from None

    def rewrap(self, subject: str, wrapped: Wrapped) -> Wrapped:
        """The same data key wrapped by the current master key (unchanged if it already is)."""
        if wrapped.key_id == self.current:
            return wrapped
        return self.wrap(subject, self.unwrap(subject, wrapped))



def blind_index(index_key: bytes, kind: str, value: str) -> str:
    """A keyed hash of ``value`` for equality look-ups (hex): equal values, equal hashes; without
    the index key, nothing to learn or to guess against. The index key is a random key kept
    wrapped by the master key like a data key (so a rotation re-wraps it and the hashes stay)."""
    return hmac.digest(_index(index_key), kind.encode() + b"\0" + value.encode(), "sha256").hex()


@functools.lru_cache(maxsize=4)
def _index(index_key: bytes) -> bytes:
    # derived once per index key, not per look-up (a register_resident batch hashes every number)
    return hmac.digest(index_key, _INDEX, "sha256")


@functools.lru_cache(maxsize=8)
def _master(master_key: bytes) -> AESGCM:
    # a master key's cipher made once: every data key made or read is wrapped or unwrapped by one
    return AESGCM(master_key)


def new_data_key() -> bytes:
    """A new random data key for one subject."""
    return os.urandom(KEY_BYTES)


def seal(data_key: bytes, subject: str, plaintext: bytes) -> bytes:
    """``plaintext`` encrypted with the subject's data key (nonce + ciphertext + tag), bound to
    ``subject``: a sealed value copied onto another row does not open there."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, _SEAL + subject.encode())


def unseal(data_key: bytes, subject: str, sealed: bytes) -> bytes:
    """What :func:`seal` sealed, or :class:`KeyProblem` if the key or the subject is not its own."""
    try:
        return _open(data_key, sealed, _SEAL + subject.encode())
    except InvalidTag:
        raise KeyProblem(f"the personal data of {subject} does not open with this key") from None


def _open(key: bytes | AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise InvalidTag()
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


def from_env(env: Mapping[str, str]) -> Keyring:
    """The keyring ``CORDON_MASTER_KEY`` (one key) or ``CORDON_MASTER_KEY_FILE`` (current key
    first, earlier keys after it, one a line; ``#`` comments) names; :class:`NoMasterKey` if neither."""
    text, path = env.get("CORDON_MASTER_KEY"), env.get("CORDON_MASTER_KEY_FILE")
    if text:
        return Keyring.of(parse_key(text))
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as err:
            raise KeyProblem(f"CORDON_MASTER_KEY_FILE {path}: {err.strerror}") from None
        keys = [parse_key(line, f"{path} line {n}") for n, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")]
        if keys:
            return Keyring.of(*keys)
    raise NoMasterKey("personal data is encrypted with a master key: set CORDON_MASTER_KEY (base64 of 32 "
                      "bytes) or CORDON_MASTER_KEY_FILE (`cordon up` makes <data dir>/auth/master.key)")


def ensure_key_file(path: Path) -> Path:
    """Create a master key file (0600, a new random key) unless one exists; its path."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_master_key() + "\n")
    return path
