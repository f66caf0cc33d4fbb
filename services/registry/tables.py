"""The registry's own tables and the SQL that writes and reads them.

``registry.residents``: residents' personal data. Name, ID-card number and phone never go into
events (they are published to every service); they are written here, in the same transaction as
the ResidentRegistered event that carries the opaque id and a masked name. Its birth year too
(since ResidentRegistered schema 2): with the masked name and the building it singles a person out.

``registry.households``: a household's address (building and room: the door), written with its
HouseholdRegistered, which (since schema 2) carries the building but not the address.

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
    name          text NOT NULL,
    id_number     text NOT NULL UNIQUE,
    phone         text,
    registered_at timestamptz NOT NULL
);
-- Null for residents registered before the birth year left the event (it is in their schema-1 event).
ALTER TABLE registry.residents ADD COLUMN IF NOT EXISTS birth_year integer;
CREATE TABLE IF NOT EXISTS registry.households (
    household     text PRIMARY KEY,
    community     text NOT NULL,
    address       text NOT NULL,
    registered_at timestamptz NOT NULL
);
-- Once, on the first start after schema 2: what schema-1 events carried (the address, the birth
-- year) is copied from the registry's record into its tables, so the read path answers for the
-- households and residents registered before. Guarded so later starts skip the scan.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM registry.households) THEN
        INSERT INTO registry.households (household, community, address, registered_at)
        SELECT r.env->'data'->>'household', r.community, r.env->'data'->>'address', r.recorded_at
        FROM (SELECT community, recorded_at, convert_from(envelope, 'UTF8')::jsonb AS env
              FROM registry.events WHERE type = 'HouseholdRegistered') r
        WHERE (r.env->>'schema')::int = 1
        ON CONFLICT (household) DO NOTHING;
    END IF;
    IF EXISTS (SELECT 1 FROM registry.residents WHERE birth_year IS NULL) THEN
        UPDATE registry.residents p SET birth_year = (r.env->'data'->>'birth_year')::int
        FROM (SELECT convert_from(envelope, 'UTF8')::jsonb AS env FROM registry.events
              WHERE type = 'ResidentRegistered') r
        WHERE p.birth_year IS NULL AND (r.env->>'schema')::int = 1
          AND r.env->'data'->>'resident' = p.resident;
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
    "INSERT INTO registry.residents (resident, household, community, name, id_number, phone, registered_at, "
    "birth_year) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
INSERT_ADDRESS = (
    "INSERT INTO registry.households (household, community, address, registered_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (household) DO NOTHING"
)

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

#: Which of the given ID numbers are registered already ($1: text[]).
TAKEN_ID_NUMBERS = "SELECT id_number FROM registry.residents WHERE id_number = ANY($1)"
