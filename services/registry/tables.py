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
registry starts (:mod:`services.registry.migrate`), and those columns dropped. The birth year is
sealed with them (since ResidentRegistered schema 2: with the masked name and the building it
singles a person out); a registry of before finds it in its schema-1 events.

``registry.households``: a household's address (building and room: the door), written with its
HouseholdRegistered, which (since schema 2) carries the building but not the address.

``registry.arrivals``: an arrival's travel history (origin, transport with a train's number, the
places visited and when), written with its ArrivalRegistered, which (since schema 2) carries the
day, the city's class and whether a risk area was visited, not where: kept for tracing.

``registry.residents.moved_out_at`` (ResidentMovedOut) is what the retention scheduler
(:mod:`services.registry.retention`) counts from; ``registry.retention_runs`` the city days it has
run, with how many it shredded (counts, never who). Whether a resident's quarantine cases are all
closed comes from the registry's own copy of the quarantine's events (:mod:`services.registry.copies`).

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
        -- its birth years are in its schema-1 events: copied beside the plaintext, sealed with it
        ALTER TABLE registry.residents ADD COLUMN IF NOT EXISTS birth_year integer;
        UPDATE registry.residents p SET birth_year = (r.env->'data'->>'birth_year')::int
        FROM (SELECT convert_from(envelope, 'UTF8')::jsonb AS env FROM registry.events
              WHERE type = 'ResidentRegistered') r
        WHERE p.birth_year IS NULL AND (r.env->>'schema')::int = 1
          AND r.env->'data'->>'resident' = p.resident;
    END IF;
END $$;
-- moved_out_at: added with the retention of residents; a registry of before finds it in its record
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'registry'
                   AND table_name = 'residents' AND column_name = 'moved_out_at') THEN
        ALTER TABLE registry.residents ADD COLUMN moved_out_at timestamptz;
        UPDATE registry.residents p SET moved_out_at = (r.env->'data'->>'moved_out_at')::timestamptz
        FROM (SELECT convert_from(envelope, 'UTF8')::jsonb AS env FROM registry.events
              WHERE type = 'ResidentMovedOut') r
        WHERE r.env->'data'->>'resident' = p.resident;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS residents_moved_out ON registry.residents (moved_out_at)
    WHERE moved_out_at IS NOT NULL AND erased_at IS NULL;
CREATE TABLE IF NOT EXISTS registry.retention_runs (
    day        date PRIMARY KEY,
    before     timestamptz NOT NULL,
    shredded   integer NOT NULL,
    applied_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS registry.households (
    household     text PRIMARY KEY,
    community     text NOT NULL,
    address       text NOT NULL,
    registered_at timestamptz NOT NULL
);
-- Once, on the first start after schema 2: the addresses schema-1 events carried are copied from
-- the registry's record into its table, so the read path answers for the households registered
-- before. Guarded so later starts skip the scan.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM registry.households) THEN
        INSERT INTO registry.households (household, community, address, registered_at)
        SELECT r.env->'data'->>'household', r.community, r.env->'data'->>'address', r.recorded_at
        FROM (SELECT community, recorded_at, convert_from(envelope, 'UTF8')::jsonb AS env
              FROM registry.events WHERE type = 'HouseholdRegistered') r
        WHERE (r.env->>'schema')::int = 1
        ON CONFLICT (household) DO NOTHING;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS registry.arrivals (
    arrival       text PRIMARY KEY,
    resident      text NOT NULL,
    community     text NOT NULL,
    origin        text NOT NULL,
    transport     jsonb NOT NULL,
    visited       jsonb NOT NULL,
    registered_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS arrivals_resident ON registry.arrivals (resident);
-- Once, on the first start after ArrivalRegistered schema 2: the travel history of the schema-1
-- events is copied from the registry's record, so tracing finds the arrivals of before too.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM registry.arrivals) THEN
        INSERT INTO registry.arrivals (arrival, resident, community, origin, transport, visited, registered_at)
        SELECT r.env->'data'->>'arrival', r.env->'data'->>'resident', r.community, r.env->'data'->>'origin',
               r.env->'data'->'transport', coalesce(r.env->'data'->'visited', '[]'::jsonb), r.recorded_at
        FROM (SELECT community, recorded_at, convert_from(envelope, 'UTF8')::jsonb AS env
              FROM registry.events WHERE type = 'ArrivalRegistered') r
        WHERE (r.env->>'schema')::int = 1
        ON CONFLICT (arrival) DO NOTHING;
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
INSERT_ADDRESS = (
    "INSERT INTO registry.households (household, community, address, registered_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (household) DO NOTHING"
)
INSERT_TRAVEL = (
    "INSERT INTO registry.arrivals (arrival, resident, community, origin, transport, visited, registered_at) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)"
)
#: Masked names, from each resident's ResidentRegistered (version 1 of ``resident:<id>``, found by
#: the events table's unique index): the registry keeps no display name of its own.
NAMES = (
    "SELECT r.resident, r.household, convert_from(e.envelope, 'UTF8')::jsonb->'data'->>'display_name' "
    "AS display_name FROM registry.residents r JOIN registry.events e "
    "ON e.stream_id = 'resident:' || r.resident AND e.version = 1 AND e.type = 'ResidentRegistered' "
    "WHERE r.community = $1 AND (r.resident = ANY($2::text[]) OR r.household = ANY($3::text[])) "
    "ORDER BY r.registered_at, r.resident"
)
#: The sealed personal data of one resident ($1) or of every resident of a household ($2).
CONTACTS = (
    "SELECT r.resident, r.household, r.community, r.personal, r.erased_at, h.address "
    "FROM registry.residents r LEFT JOIN registry.households h ON h.household = r.household "
    "WHERE r.resident = $1 OR r.household = $2 ORDER BY r.registered_at, r.resident"
)
ERASE_TRAVEL = "DELETE FROM registry.arrivals WHERE resident = $1"
MOVED_OUT = "UPDATE registry.residents SET moved_out_at = $2 WHERE resident = $1"
#: Residents due for retention ($1: the cut-off), after the keyset cursor ($2, $3: community, resident),
#: $4 at most: moved out before the cut-off, not erased, no quarantine case open in the copy.
DUE_FOR_RETENTION = (
    "SELECT r.community, r.resident FROM registry.residents r "
    "WHERE r.moved_out_at < $1 AND r.erased_at IS NULL AND (r.community, r.resident) > ($2, $3) "
    "AND NOT EXISTS (SELECT 1 FROM registry.q_cases c WHERE c.resident = r.resident AND c.closed_at IS NULL) "
    "ORDER BY r.community, r.resident LIMIT $4"
)
#: Which of the residents ($1) have a quarantine case not closed.
WITH_OPEN_CASES = "SELECT DISTINCT resident FROM registry.q_cases WHERE resident = ANY($1) AND closed_at IS NULL"
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
