"""The checkpoint's own tables and the SQL that writes and reads them.

They are written in the command's transaction, so they never disagree with the record: ``passes``
(validity at the gate, lookup by printed number), ``visitors`` (a visit: its name, phone and
purpose sealed in ``personal`` with the visit's own data key, :mod:`shared.keystore`; events carry
a masked name; shredded, ``personal`` null, once the tracing window is over), ``shifts`` (the open shift of a staff
member, the volunteer-hours query). The local copies of other services' facts have tables of their
own: ``dir_*`` (:mod:`shared.directory`) and ``q_cases``/``sealed_areas``
(:mod:`services.checkpoint.copies`).
"""
from __future__ import annotations

SCHEMA = "checkpoint"

DDL = """
CREATE TABLE IF NOT EXISTS checkpoint.passes (
    pass          text PRIMARY KEY,
    number        text NOT NULL UNIQUE,
    community     text NOT NULL,
    compound      text NOT NULL,
    household     text NOT NULL,
    issued_at     timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text);
CREATE INDEX IF NOT EXISTS passes_household ON checkpoint.passes (household);
CREATE TABLE IF NOT EXISTS checkpoint.visitors (
    passage        text PRIMARY KEY,
    community      text NOT NULL,
    compound       text NOT NULL,
    gate           text NOT NULL,
    direction      text NOT NULL,
    host_household text NOT NULL,
    allowed        boolean NOT NULL,
    reason         text,
    checked_at     timestamptz NOT NULL,
    -- sealed JSON {name, phone, purpose} (keyed by the passage); null once shredded
    personal       bytea,
    shredded_at    timestamptz);
-- A checkpoint of before kept name, phone and purpose in clear (NOT NULL): made nullable here, so
-- that visits are recorded sealed at once; services/checkpoint/migrate.py seals those rows at
-- start and drops the columns.
ALTER TABLE checkpoint.visitors ADD COLUMN IF NOT EXISTS personal bytea,
    ADD COLUMN IF NOT EXISTS shredded_at timestamptz;
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'checkpoint'
               AND table_name = 'visitors' AND column_name = 'name') THEN
        ALTER TABLE checkpoint.visitors ALTER COLUMN name DROP NOT NULL, ALTER COLUMN phone DROP NOT NULL,
            ALTER COLUMN purpose DROP NOT NULL;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS visitors_unshredded ON checkpoint.visitors (checked_at) WHERE personal IS NOT NULL;
CREATE TABLE IF NOT EXISTS checkpoint.shifts (
    shift      text PRIMARY KEY,
    community  text NOT NULL,
    compound   text,
    gate       text NOT NULL,
    staff      text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    hours      double precision);
CREATE UNIQUE INDEX IF NOT EXISTS shifts_one_open ON checkpoint.shifts (staff) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS shifts_day ON checkpoint.shifts (community, started_at);
-- A vehicle check (issue 17): the plate and an outside driver's name and phone sealed in personal
-- ({plate, driver_name, driver_phone}) with a data key of the check's own (subject vehicle:<id>),
-- shredded with the visitors' after the tracing window.
CREATE TABLE IF NOT EXISTS checkpoint.vehicles (
    vehicle     text PRIMARY KEY,
    community   text NOT NULL,
    compound    text NOT NULL,
    gate        text NOT NULL,
    direction   text NOT NULL,
    purpose     text NOT NULL,
    driver      text,
    allowed     boolean NOT NULL,
    reason      text,
    checked_at  timestamptz NOT NULL,
    personal    bytea,
    shredded_at timestamptz);
CREATE INDEX IF NOT EXISTS vehicles_unshredded ON checkpoint.vehicles (checked_at) WHERE personal IS NOT NULL;
-- The drop point's parcels (issue 17): the work list checkpoint.parcels reads.
CREATE TABLE IF NOT EXISTS checkpoint.parcels (
    parcel       text PRIMARY KEY,
    community    text NOT NULL,
    compound     text NOT NULL,
    gate         text NOT NULL,
    household    text NOT NULL,
    building     text,
    kind         text NOT NULL,
    dropped_at   timestamptz NOT NULL,
    collected_at timestamptz,
    resident     text,
    volunteer    text);
CREATE INDEX IF NOT EXISTS parcels_waiting ON checkpoint.parcels (community, dropped_at) WHERE collected_at IS NULL;
CREATE INDEX IF NOT EXISTS parcels_day ON checkpoint.parcels (community, dropped_at);
"""

# -- passes ------------------------------------------------------------------------------------

INSERT_PASS = ("INSERT INTO checkpoint.passes (pass, number, community, compound, household, issued_at) "
               "VALUES ($1, $2, $3, $4, $5, $6)")
REVOKE_PASS = "UPDATE checkpoint.passes SET revoked_at = $2, revoke_reason = $3 WHERE pass = $1"
#: A pass named by its id or its printed number.
FIND_PASS = "SELECT pass, household FROM checkpoint.passes WHERE pass = $1 OR number = $1"

# -- visitors ----------------------------------------------------------------------------------

INSERT_VISITOR = ("INSERT INTO checkpoint.visitors (passage, community, compound, gate, direction, host_household, "
                  "allowed, reason, checked_at, personal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
#: A visit, for the read path.
VISITOR = ("SELECT passage, community, compound, gate, host_household, checked_at, personal "
           "FROM checkpoint.visitors WHERE passage = $1")
#: The visits whose personal data is due for shredding (they came before $1) and not yet shredded.
DUE_VISITORS = ("SELECT passage, community FROM checkpoint.visitors "
                "WHERE personal IS NOT NULL AND checked_at < $1 ORDER BY passage")
SHRED_VISITORS = ("UPDATE checkpoint.visitors SET personal = NULL, shredded_at = $2 "
                  "WHERE passage = ANY($1::text[]) AND personal IS NOT NULL")

# -- shifts ------------------------------------------------------------------------------------

INSERT_SHIFT = ("INSERT INTO checkpoint.shifts (shift, community, compound, gate, staff, started_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)")
END_SHIFT = "UPDATE checkpoint.shifts SET ended_at = $2, hours = $3 WHERE shift = $1"
OPEN_SHIFT = "SELECT shift FROM checkpoint.shifts WHERE staff = $1 AND ended_at IS NULL"
#: The shifts query's figures per local day ($4: the city's time zone) and in total.
SHIFT_FIGURES = """
SELECT (started_at AT TIME ZONE $4)::date AS day, count(*) AS person_times,
       count(DISTINCT staff) AS people, coalesce(sum(hours), 0) AS hours,
       count(*) FILTER (WHERE ended_at IS NULL) AS open_shifts
FROM checkpoint.shifts
WHERE community = $1 AND started_at >= $2 AND started_at < $3
GROUP BY GROUPING SETS ((1), ()) ORDER BY 1 NULLS LAST
"""

# -- vehicles ----------------------------------------------------------------------------------

INSERT_VEHICLE = ("INSERT INTO checkpoint.vehicles (vehicle, community, compound, gate, direction, purpose, driver, "
                  "allowed, reason, checked_at, personal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
#: The vehicle checks whose sealed data is due for shredding (checked before $1), not yet shredded.
DUE_VEHICLES = ("SELECT vehicle, community FROM checkpoint.vehicles "
                "WHERE personal IS NOT NULL AND checked_at < $1 ORDER BY vehicle")
SHRED_VEHICLES = ("UPDATE checkpoint.vehicles SET personal = NULL, shredded_at = $2 "
                  "WHERE vehicle = ANY($1::text[]) AND personal IS NOT NULL")

# -- the drop point ----------------------------------------------------------------------------

INSERT_PARCEL = ("INSERT INTO checkpoint.parcels (parcel, community, compound, gate, household, building, kind, "
                 "dropped_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
COLLECT_PARCEL = ("UPDATE checkpoint.parcels SET collected_at = $2, resident = $3, volunteer = $4 "
                  "WHERE parcel = $1")
#: The drop point's work list, oldest first: $1 community, $2 compound, $3 gate (null: any), $4
#: waiting only, $5 the page's last parcel ('' for the first page), $6 the page's size. A parcel
#: goes to the door when its household is in home quarantine or its building or compound sealed.
PARCELS = """
SELECT p.parcel, p.compound, p.gate, p.household, p.building, p.kind, p.dropped_at, p.collected_at,
       p.resident, p.volunteer,
       EXISTS (SELECT 1 FROM checkpoint.q_cases q
               WHERE q.household = p.household AND q.status = 'quarantine' AND q.at_home)
       OR EXISTS (SELECT 1 FROM checkpoint.sealed_areas s
                  WHERE s.community = p.community AND s.compound = p.compound
                    AND (s.building = '' OR s.building = p.building)) AS to_the_door
FROM checkpoint.parcels p
WHERE p.community = $1 AND ($2::text IS NULL OR p.compound = $2) AND ($3::text IS NULL OR p.gate = $3)
  AND (NOT $4 OR p.collected_at IS NULL)
  AND ($5 = '' OR (p.dropped_at, p.parcel) > (SELECT a.dropped_at, a.parcel FROM checkpoint.parcels a
                                               WHERE a.parcel = $5))
ORDER BY p.dropped_at, p.parcel
LIMIT $6
"""
