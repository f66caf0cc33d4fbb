"""The registry's key store: each resident's data key, wrapped by the master key, in the schema
``registry`` of the key database (:mod:`shared.keystore`, which says why the keys live in a
database of their own).

One row per resident in ``registry.data_keys``; the blind index's key is kept there too, as subject
:data:`shared.keystore.INDEX_SUBJECT`. Erasing a resident deletes their key and records the subject in
``registry.erasures`` *in the key database*, so a key for that subject is never made again.
"""
from __future__ import annotations

from shared import keystore, pii

SCHEMA = "registry"


class KeyStore(keystore.KeyStore):
    """The residents' data keys, and the blind index's key (:attr:`index_key`)."""

    def __init__(self, keyring: pii.Keyring | None = None, dsn: str | None = None):
        super().__init__(SCHEMA, keyring, dsn, index_key=True)
