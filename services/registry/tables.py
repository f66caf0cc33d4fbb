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

``registry.households.compound``/``building`` (issue 17): where a household is, for
``registry.compound_households``; copied from its HouseholdRegistered on the first start after.
``registry.verifications``: the arrivals that wait for door-to-door verification (one row per
arrival that requires it, ``verified_at`` set by ArrivalVerified): the work list
``registry.awaiting_verification``, built from the record on the first start after it came.
``registry.tip_offs``: neighbours' tip-offs and their follow-up, with the words of each (``note``,
``follow_up_note``), which never go on the bus.

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
-- Sealed (issue 16): the address with the household's own data key (subject household:<id>), the
-- travel history with the resident's; the plaintext columns stay for what was copied from
-- schema-1 events, which migrate.seal_plaintext seals at start and then empties.
ALTER TABLE registry.households ADD COLUMN IF NOT EXISTS sealed bytea;
ALTER TABLE registry.households ALTER COLUMN address DROP NOT NULL;
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
ALTER TABLE registry.arrivals ADD COLUMN IF NOT EXISTS sealed bytea;
ALTER TABLE registry.arrivals ALTER COLUMN origin DROP NOT NULL, ALTER COLUMN transport DROP NOT NULL,
    ALTER COLUMN visited DROP NOT NULL;
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
-- Where a household is (issue 17): added, and copied from the record's HouseholdRegistered (both
-- schemas carry compound and building), once.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'registry'
                   AND table_name = 'households' AND column_name = 'compound') THEN
        ALTER TABLE registry.households ADD COLUMN compound text, ADD COLUMN building text;
        UPDATE registry.households h SET compound = r.env->'data'->>'compound', building = r.env->'data'->>'building'
        FROM (SELECT convert_from(envelope, 'UTF8')::jsonb AS env FROM registry.events
              WHERE type = 'HouseholdRegistered') r
        WHERE r.env->'data'->>'household' = h.household;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS households_compound ON registry.households (community, compound, household);
-- The arrivals waiting for verification (issue 17); a registry of before fills it from its record.
DO $$ BEGIN
    IF to_regclass('registry.verifications') IS NULL THEN
        -- (the registration's columns may be null for a moment: see INSERT_WAITING)
        CREATE TABLE registry.verifications (
            arrival       text PRIMARY KEY,
            community     text NOT NULL,
            resident      text,
            household     text,
            compound      text,
            building      text,
            arrived_on    date,
            city_class    text,
            registered_at timestamptz,
            verified_at   timestamptz);
        INSERT INTO registry.verifications
        SELECT d->>'arrival', r.community, d->>'resident', d->>'household', d->>'compound', d->>'building',
               (d->>'arrived_on')::date, d->>'city_class', (d->>'registered_at')::timestamptz, NULL
        FROM (SELECT community, convert_from(envelope, 'UTF8')::jsonb->'data' AS d FROM registry.events
              WHERE type = 'ArrivalRegistered') r
        WHERE (d->>'requires_verification')::boolean;
        UPDATE registry.verifications v SET verified_at = (r.d->>'verified_at')::timestamptz
        FROM (SELECT convert_from(envelope, 'UTF8')::jsonb->'data' AS d FROM registry.events
              WHERE type = 'ArrivalVerified') r
        WHERE r.d->>'arrival' = v.arrival;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS verifications_waiting ON registry.verifications (community, registered_at, arrival)
    WHERE verified_at IS NULL;
-- (what the recording writes may be null for a moment: see INSERT_TIP_OFF)
CREATE TABLE IF NOT EXISTS registry.tip_offs (
    tip_off        text PRIMARY KEY,
    community      text NOT NULL,
    compound       text NOT NULL,
    building       text,
    household      text,
    kind           text,
    note           text,
    recorded_at    timestamptz,
    recorded_by    text,
    outcome        text,
    follow_up_note text,
    followed_up_at timestamptz,
    followed_up_by text
);
CREATE INDEX IF NOT EXISTS tip_offs_community ON registry.tip_offs (community, recorded_at);
-- Arrivals from the city's list waiting for their registration at the door (issue 17): the person's
-- name, ID number, phone, the address the list gave and the travel, sealed with the pending's own
-- key (subject pending:<arrival>); emptied once completed (the resident's own row holds them then).
CREATE TABLE IF NOT EXISTS registry.pending (
    arrival       text PRIMARY KEY,
    community     text NOT NULL,
    compound      text,
    building      text,
    display_name  text NOT NULL,
    arrived_on    date NOT NULL,
    city_class    text NOT NULL,
    id_hash       text,
    sealed        bytea,
    registered_at timestamptz NOT NULL,
    completed_at  timestamptz,
    resident      text
);
CREATE UNIQUE INDEX IF NOT EXISTS pending_waiting ON registry.pending (id_hash, arrived_on) WHERE completed_at IS NULL;
CREATE INDEX IF NOT EXISTS pending_list ON registry.pending (community, registered_at, arrival) WHERE completed_at IS NULL;
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
#: A household's address, sealed with the household's key (``household_subject``), and where it is.
INSERT_ADDRESS = (
    "INSERT INTO registry.households (household, community, sealed, registered_at, compound, building) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (household) DO NOTHING"
)
#: An arrival's travel history (origin, transport, visited), sealed with its resident's key.
INSERT_TRAVEL = (
    "INSERT INTO registry.arrivals (arrival, resident, community, sealed, registered_at) "
    "VALUES ($1, $2, $3, $4, $5)"
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
    "SELECT r.resident, r.household, r.community, r.personal, r.erased_at, h.sealed AS address "
    "FROM registry.residents r LEFT JOIN registry.households h ON h.household = r.household "
    "WHERE r.resident = $1 OR r.household = $2 ORDER BY r.registered_at, r.resident"
)
ERASE_TRAVEL = "DELETE FROM registry.arrivals WHERE resident = $1"
#: The residents of a household ($1) not erased.
HOUSEHOLD_LEFT = "SELECT resident FROM registry.residents WHERE household = $1 AND erased_at IS NULL"
ERASE_ADDRESS = "UPDATE registry.households SET sealed = NULL, address = NULL WHERE household = $1"
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

# -- the committee's work lists (issue 17) ---------------------------------------------------

# A batch runs each statement once for all its commands, in the order statements first appeared
# (``Context.write``): an arrival registered and verified in one batch may see VERIFIED run before
# INSERT_WAITING. So each is an upsert of its own columns, and the row is right in either order.
INSERT_WAITING = (
    "INSERT INTO registry.verifications (arrival, community, resident, household, compound, building, arrived_on, "
    "city_class, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (arrival) DO UPDATE SET "
    "resident = $3, household = $4, compound = $5, building = $6, arrived_on = $7, city_class = $8, "
    "registered_at = $9"
)
VERIFIED = (
    "INSERT INTO registry.verifications (arrival, community, verified_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (arrival) DO UPDATE SET verified_at = $3"
)
#: The masked name of resident ``r``: its ResidentRegistered (version 1 of its stream).
_DISPLAY_NAME = (
    "(SELECT convert_from(e.envelope, 'UTF8')::jsonb->'data'->>'display_name' FROM registry.events e "
    "WHERE e.stream_id = 'resident:' || {r}.resident AND e.version = 1) AS display_name"
)
#: A community's ($1) arrivals waiting, oldest first, after the arrival $2 ('' from the start), $3 at most.
WAITING = (
    "SELECT v.arrival, v.resident, " + _DISPLAY_NAME.format(r="v") + ", v.household, v.compound, v.building, "
    "v.arrived_on, v.city_class, v.registered_at FROM registry.verifications v "
    "WHERE v.community = $1 AND v.verified_at IS NULL AND ($2 = '' OR (v.registered_at, v.arrival) > "
    "(SELECT w.registered_at, w.arrival FROM registry.verifications w WHERE w.arrival = $2)) "
    "ORDER BY v.registered_at, v.arrival LIMIT $3"
)
WAITING_COUNT = "SELECT count(*) FROM registry.verifications WHERE community = $1 AND verified_at IS NULL"
#: The resident's ($1) latest arrival: who a screening call is about when the command names none.
LATEST_ARRIVAL = (
    "SELECT arrival FROM registry.arrivals WHERE resident = $1 ORDER BY registered_at DESC, arrival DESC LIMIT 1"
)
HOUSEHOLD = "SELECT household, community, compound, building FROM registry.households WHERE household = $1"
#: A household's ($1) residents: masked name, current vulnerabilities (the last event that set them).
HOUSEHOLD_RESIDENTS = (
    "SELECT r.resident, " + _DISPLAY_NAME.format(r="r") + ", ARRAY(SELECT jsonb_array_elements_text("
    "(SELECT convert_from(e.envelope, 'UTF8')::jsonb->'data'->'vulnerabilities' FROM registry.events e "
    "WHERE e.stream_id = 'resident:' || r.resident AND e.type IN ('ResidentRegistered', 'ResidentUpdated') "
    "ORDER BY e.version DESC LIMIT 1))) AS vulnerabilities, r.moved_out_at IS NOT NULL AS moved_out, "
    "r.erased_at IS NOT NULL AS erased, r.registered_at FROM registry.residents r WHERE r.household = $1 "
    "ORDER BY r.registered_at, r.resident"
)
#: Whether a stream has an event (a compound registered: ``compound:<community>:<compound>``).
STREAM_EXISTS = "SELECT EXISTS (SELECT 1 FROM registry.events WHERE stream_id = $1)"
#: A compound's ($1, $2) households after $3, $4 at most, with how many live there now.
COMPOUND_HOUSEHOLDS = (
    "SELECT h.household, h.building, count(r.resident) FILTER (WHERE r.moved_out_at IS NULL AND "
    "r.erased_at IS NULL) AS residents FROM registry.households h LEFT JOIN registry.residents r "
    "ON r.household = h.household WHERE h.community = $1 AND h.compound = $2 AND h.household > $3 "
    "GROUP BY h.household, h.building ORDER BY h.household LIMIT $4"
)
# Upserts of their own columns, for the reason of INSERT_WAITING (recorded and followed up in one batch).
INSERT_TIP_OFF = (
    "INSERT INTO registry.tip_offs (tip_off, community, compound, building, household, kind, note, recorded_at, "
    "recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tip_off) DO UPDATE SET "
    "building = $4, household = $5, kind = $6, note = $7, recorded_at = $8, recorded_by = $9"
)
FOLLOWED_UP = (
    "INSERT INTO registry.tip_offs (tip_off, community, compound, outcome, follow_up_note, followed_up_at, "
    "followed_up_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tip_off) DO UPDATE SET outcome = $4, "
    "follow_up_note = $5, followed_up_at = $6, followed_up_by = $7"
)
#: A community's ($1) tip-offs, open ($2 true), followed up ($2 false) or all (null): open first,
#: then oldest first; $3 at most.
TIP_OFFS = (
    "SELECT tip_off, compound, building, household, kind, note, recorded_at, recorded_by, outcome, follow_up_note, "
    "followed_up_at, followed_up_by FROM registry.tip_offs WHERE community = $1 "
    "AND ($2::boolean IS NULL OR (outcome IS NULL) = $2) "
    "ORDER BY outcome IS NOT NULL, recorded_at, tip_off LIMIT $3"
)
OPEN_TIP_OFFS = "SELECT count(*) FROM registry.tip_offs WHERE community = $1 AND outcome IS NULL"
#: Who holds each of the ID numbers' keyed hashes ($1: text[]), and where.
ID_HOLDERS = "SELECT id_hash, resident, community FROM registry.residents WHERE id_hash = ANY($1)"
#: Which (keyed hash, day) of $1, $2 (text[], date[]) wait already as pending registrations.
PENDING_WAITING = (
    "SELECT p.id_hash, p.arrived_on FROM registry.pending p "
    "JOIN unnest($1::text[], $2::date[]) AS w(id_hash, arrived_on) USING (id_hash, arrived_on) "
    "WHERE p.completed_at IS NULL"
)
INSERT_PENDING = (
    "INSERT INTO registry.pending (arrival, community, compound, building, display_name, arrived_on, city_class, "
    "id_hash, sealed, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
#: A pending registration's sealed data ($1: arrival), to complete it.
PENDING_SEALED = "SELECT sealed FROM registry.pending WHERE arrival = $1"
COMPLETE_PENDING = (
    "UPDATE registry.pending SET completed_at = $2, resident = $3, sealed = NULL, id_hash = NULL WHERE arrival = $1"
)
#: The work list: a community's pending registrations, oldest first, after the keyset cursor.
PENDING_LIST = (
    "SELECT arrival, compound, building, display_name, arrived_on, city_class, registered_at "
    "FROM registry.pending WHERE community = $1 AND completed_at IS NULL AND ($2 = '' OR (registered_at, arrival) > "
    "(SELECT registered_at, arrival FROM registry.pending WHERE arrival = $2)) ORDER BY registered_at, arrival LIMIT $3"
)
