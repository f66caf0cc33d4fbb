"""The registry's own tables and the SQL that writes and reads them.

``registry.residents``: residents' personal data. Name, ID-card number and phone never go into
events (they are published to every service); they are written here, in the same transaction as
the ResidentRegistered event that carries the opaque id and a masked name, *sealed* (AES-GCM,
``shared.pii``) with the resident's own data key, which lives in the key database
(:mod:`services.registry.keys`), not here: ``personal`` is the sealed JSON {name, id_number,
phone}; ``id_hash`` a keyed hash of the ID number (``Keyring.blind_index``), so that "is this
number registered?" needs no plaintext. An erased resident keeps the row (household, community)
with ``personal`` and ``id_hash`` emptied and ``erased_at`` set.

Rows of before the encryption (plaintext ``name``, ``id_number``, ``phone``) are sealed when the
registry starts (:mod:`services.registry.migrate`), and those columns dropped.

``registry.identities``: one row per key ever granted (IdentityGranted, IdentityRevoked), so the
revoked keys stay listed after their name is granted again: what NATS's revocation list is built
from (``cordon.qry.registry.identities``).
"""
from __future__ import annotations

DDL = """
CREATE TABLE IF NOT EXISTS registry.residents (
    resident      text PRIMARY KEY,
    household     text NOT NULL,
    community     text NOT NULL,
    personal      bytea,
    id_hash       text UNIQUE,
    registered_at timestamptz NOT NULL,
    erased_at     timestamptz
);
-- a registry of before the encryption: its table gains the new columns; its plaintext ones are
-- sealed and dropped by services/registry/migrate.py when the registry starts
ALTER TABLE registry.residents ADD COLUMN IF NOT EXISTS personal bytea;
ALTER TABLE registry.residents ADD COLUMN IF NOT EXISTS id_hash text;
ALTER TABLE registry.residents ADD COLUMN IF NOT EXISTS erased_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS residents_id_hash ON registry.residents (id_hash);
CREATE INDEX IF NOT EXISTS residents_household ON registry.residents (household);
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'registry'
               AND table_name = 'residents' AND column_name = 'id_number') THEN
        ALTER TABLE registry.residents ALTER COLUMN name DROP NOT NULL, ALTER COLUMN id_number DROP NOT NULL;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS registry.identities (
    public_key     text PRIMARY KEY,
    identity       text NOT NULL,
    role           text NOT NULL,
    scope          text NOT NULL,
    community      text,
    compound       text,
    grants         text[] NOT NULL,
    granted_at     timestamptz NOT NULL,
    granted_by     text NOT NULL,
    revoked_at     timestamptz,
    revoked_by     text,
    revoked_reason text
);
-- one live grant per name
CREATE UNIQUE INDEX IF NOT EXISTS identities_live ON registry.identities (identity) WHERE revoked_at IS NULL;
"""

INSERT_PII = (
    "INSERT INTO registry.residents (resident, household, community, personal, id_hash, registered_at) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
#: The sealed personal data of one resident ($1) or of every resident of a household ($2).
CONTACTS = (
    "SELECT resident, household, community, personal, erased_at FROM registry.residents "
    "WHERE resident = $1 OR household = $2 ORDER BY registered_at, resident"
)
ERASE_PII = "UPDATE registry.residents SET personal = NULL, id_hash = NULL, erased_at = $2 WHERE resident = $1"

INSERT_GRANT = (
    "INSERT INTO registry.identities (public_key, identity, role, scope, community, compound, grants, "
    "granted_at, granted_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
REVOKE_GRANT = "UPDATE registry.identities SET revoked_at = $2, revoked_by = $3, revoked_reason = $4 WHERE public_key = $1"
#: Who holds (or held) a key ($1: the public key).
KEY_HOLDER = "SELECT identity FROM registry.identities WHERE public_key = $1"
IDENTITIES = (
    "SELECT identity AS name, role, scope, community, compound, grants, public_key, granted_at, granted_by, "
    "revoked_at, revoked_by, revoked_reason AS reason FROM registry.identities ORDER BY granted_at, identity"
)

#: Which of the given ID numbers' keyed hashes are registered already ($1: text[]).
TAKEN_ID_HASHES = "SELECT id_hash FROM registry.residents WHERE id_hash = ANY($1)"
