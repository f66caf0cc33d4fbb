"""The checkpoint's own tables and the SQL that writes and reads them.

They are written in the command's transaction, so they never disagree with the record: ``passes``
(validity at the gate, lookup by printed number), ``visitors`` (a visitor's name and phone:
personal data stays here, events carry a masked name), ``shifts`` (the open shift of a staff
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
    name           text NOT NULL,
    phone          text NOT NULL,
    host_household text NOT NULL,
    purpose        text NOT NULL,
    allowed        boolean NOT NULL,
    reason         text,
    checked_at     timestamptz NOT NULL);
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
"""

# -- passes ------------------------------------------------------------------------------------

INSERT_PASS = ("INSERT INTO checkpoint.passes (pass, number, community, compound, household, issued_at) "
               "VALUES ($1, $2, $3, $4, $5, $6)")
REVOKE_PASS = "UPDATE checkpoint.passes SET revoked_at = $2, revoke_reason = $3 WHERE pass = $1"
#: A pass named by its id or its printed number.
FIND_PASS = "SELECT pass, household FROM checkpoint.passes WHERE pass = $1 OR number = $1"

# -- visitors ----------------------------------------------------------------------------------

INSERT_VISITOR = ("INSERT INTO checkpoint.visitors VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")

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
