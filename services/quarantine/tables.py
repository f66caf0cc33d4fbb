"""The quarantine service's own tables, beside its event record.

``cases`` is one row per case, written by the command handlers in the same transaction as the
case's events, so it is exactly as current as the record (and can be rebuilt from it). It answers
the scheduler's set-based sweep, the committee's case list, and — through a partial unique index —
guarantees one open case per resident even when two service instances race.

``checkins`` keeps what a check-in read (temperature, symptoms), one row per CheckinRecorded and
SymptomsReported event (by its stream and version), written in the same transaction: since their
schema 2 (issue 16) the events say that a resident checked in and whether it was abnormal, not the
health data; the quarantine's history query merges it back for the staff of the case's community.

``samples`` keeps the registration code printed for a sampled resident (for the elderly without a
phone), which SampleTaken carried before its schema 2: a code on a slip is a credential, like a
pass number.

``sample_codes`` keeps the codes printed ahead of a round (``issue_sample_codes``), one per
resident and round, unique in the round: ``record_sample`` finds the resident from one.

``round_samples`` is one row per sample of a round (taken, whether the resident stays in until the
result, the result), written with the sample's events: the round's status list (who is not
sampled yet, whose result is pending, who stays in) reads it beside the directory's residents.
Created with the samples recorded before it (from the record), so a round under way keeps them.

``sweeps`` records each day the scheduler has finished sweeping for missed check-ins, so a
restarted service knows where to resume.
"""
from __future__ import annotations

from datetime import date

from services.quarantine.domain import Case

DDL = """
CREATE TABLE IF NOT EXISTS quarantine.cases (
    case_id         text PRIMARY KEY,
    resident        text NOT NULL,
    community       text NOT NULL,
    household       text,
    compound        text,
    building        text,
    kind            text NOT NULL,
    reason          text NOT NULL,
    stage           text NOT NULL,
    open            boolean NOT NULL,
    starts_on       date NOT NULL,
    ends_on         date NOT NULL,
    due_from        date NOT NULL,
    opened_at       timestamptz NOT NULL,
    closed_on       date,
    checkins        integer NOT NULL DEFAULT 0,
    last_checkin_on date,
    missed          integer NOT NULL DEFAULT 0,
    last_missed_on  date
);
-- The day a case was taken to hospital, while it is there (added after the first release).
ALTER TABLE quarantine.cases ADD COLUMN IF NOT EXISTS admitted_on date;
-- Room on each page, so the daily counter updates stay HOT (no index churn).
ALTER TABLE quarantine.cases SET (fillfactor = 70);
CREATE UNIQUE INDEX IF NOT EXISTS cases_one_open_per_resident ON quarantine.cases (resident) WHERE open;
CREATE INDEX IF NOT EXISTS cases_due ON quarantine.cases (case_id) WHERE open AND stage <> 'hospital';
CREATE INDEX IF NOT EXISTS cases_monitoring_end ON quarantine.cases (ends_on, case_id)
    WHERE open AND stage = 'monitoring';
CREATE INDEX IF NOT EXISTS cases_community ON quarantine.cases (community, open, case_id);
-- The auto-release policy's look, every tick, at the home cases whose planned last day is today.
CREATE INDEX IF NOT EXISTS cases_home_end ON quarantine.cases (ends_on, case_id) WHERE open AND stage = 'home';
CREATE INDEX IF NOT EXISTS cases_resident ON quarantine.cases (resident);
CREATE TABLE IF NOT EXISTS quarantine.checkins (
    stream_id     text NOT NULL,
    version       integer NOT NULL,
    case_id       text NOT NULL,
    community     text NOT NULL,
    temperature_c double precision NOT NULL,
    symptoms      text[] NOT NULL,
    PRIMARY KEY (stream_id, version)
);
CREATE TABLE IF NOT EXISTS quarantine.samples (
    screening text NOT NULL,
    resident  text NOT NULL,
    community text NOT NULL,
    code      text NOT NULL,
    PRIMARY KEY (screening, resident)
);
CREATE TABLE IF NOT EXISTS quarantine.sample_codes (
    screening text NOT NULL,
    resident  text NOT NULL,
    community text NOT NULL,
    code      text NOT NULL,
    issued_at timestamptz NOT NULL,
    PRIMARY KEY (screening, resident),
    UNIQUE (screening, code)
);
DO $$ BEGIN
IF to_regclass('quarantine.round_samples') IS NULL THEN
    CREATE TABLE quarantine.round_samples (
        screening text NOT NULL,
        resident  text NOT NULL,
        community text NOT NULL,
        taken_at  timestamptz,
        stay_in   boolean NOT NULL,
        result    text,
        PRIMARY KEY (screening, resident)
    );
    INSERT INTO quarantine.round_samples
    SELECT e.d->>'screening', e.d->>'resident', e.community, (e.d->>'taken_at')::timestamptz,
           coalesce((e.d->>'stay_in_until_result')::boolean, false), r.d->>'result'
    FROM (SELECT community, convert_from(envelope, 'UTF8')::jsonb->'data' AS d
          FROM quarantine.events WHERE type = 'SampleTaken') e
    LEFT JOIN (SELECT convert_from(envelope, 'UTF8')::jsonb->'data' AS d
               FROM quarantine.events WHERE type = 'ResultRecorded') r
      ON r.d->>'screening' = e.d->>'screening' AND r.d->>'resident' = e.d->>'resident'
    ON CONFLICT DO NOTHING;
END IF;
END $$;
-- the residents of a compound, for a round's codes and status list
CREATE INDEX IF NOT EXISTS dir_residents_area ON quarantine.dir_residents (community, compound, building);
CREATE TABLE IF NOT EXISTS quarantine.sweeps (
    day       date PRIMARY KEY,
    missed    integer NOT NULL,
    swept_at  timestamptz NOT NULL
);
"""

# Every change to a case row goes through this one statement: the runtime groups a batch's writes
# by SQL text, so one statement keeps the rows of a case in command order. Check-in and missed
# counts are deltas, so the statement commutes with itself on those columns.
UPSERT_CASE = """
INSERT INTO quarantine.cases (case_id, resident, community, household, compound, building, kind, reason,
    stage, open, starts_on, ends_on, due_from, opened_at, closed_on,
    checkins, last_checkin_on, missed, last_missed_on, admitted_on)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (case_id) DO UPDATE SET
    stage = EXCLUDED.stage, admitted_on = EXCLUDED.admitted_on, open = EXCLUDED.open, ends_on = EXCLUDED.ends_on,
    due_from = EXCLUDED.due_from, closed_on = EXCLUDED.closed_on,
    checkins = quarantine.cases.checkins + EXCLUDED.checkins,
    last_checkin_on = GREATEST(quarantine.cases.last_checkin_on, EXCLUDED.last_checkin_on),
    missed = quarantine.cases.missed + EXCLUDED.missed,
    last_missed_on = GREATEST(quarantine.cases.last_missed_on, EXCLUDED.last_missed_on)
"""


def case_row(case: Case, *, checkin_on: date | None = None, missed_on: date | None = None) -> tuple:
    """The arguments of :data:`UPSERT_CASE` for a case's current state and one day's news."""
    return (
        case.case, case.resident, case.community, case.household, case.compound, case.building,
        case.kind, case.reason, case.stage, not case.closed, case.starts_on, case.ends_on, case.due_from,
        case.opened_at, case.closed_on, 1 if checkin_on else 0, checkin_on, 1 if missed_on else 0, missed_on,
        case.admitted_on,
    )


# A case as its row says, for commands that read many cases and change none (the missed-check-in
# sweep): the row is written in the same transaction as the case's events, so it is the state
# their replay gives — a snapshot that costs one index look-up instead of a decode per event.
CASES_BY_ID = """
SELECT case_id, resident, community, household, compound, building, kind, reason, stage,
       starts_on, ends_on, due_from, opened_at, closed_on, admitted_on
FROM quarantine.cases WHERE case_id = ANY($1::text[])
"""


def case_of_row(row) -> Case:
    """The :class:`Case` a :data:`CASES_BY_ID` row stands for."""
    return Case(case=row[0], resident=row[1], community=row[2], household=row[3], compound=row[4],
                building=row[5], kind=row[6], reason=row[7], stage=row[8], starts_on=row[9], ends_on=row[10],
                due_from=row[11], opened_at=row[12], closed_on=row[13], admitted_on=row[14])


# The scheduler's bulk mark: counters only, so it commutes with UPSERT_CASE; every case in it
# existed before the command was decided, so its row was written by an earlier statement.
MARK_MISSED = """
UPDATE quarantine.cases SET missed = missed + 1, last_missed_on = GREATEST(last_missed_on, $2)
WHERE case_id = ANY($1::text[])
"""

INSERT_CHECKIN = """
INSERT INTO quarantine.checkins (stream_id, version, case_id, community, temperature_c, symptoms)
VALUES ($1, $2, $3, $4, $5, $6)
"""
INSERT_SAMPLE_CODE = "INSERT INTO quarantine.samples (screening, resident, community, code) VALUES ($1, $2, $3, $4)"
INSERT_CODE = ("INSERT INTO quarantine.sample_codes (screening, resident, community, code, issued_at) "
               "VALUES ($1, $2, $3, $4, $5)")
CODE_HOLDER = "SELECT resident FROM quarantine.sample_codes WHERE screening = $1 AND code = $2"
CODED = "SELECT resident FROM quarantine.sample_codes WHERE screening = $1 AND resident = ANY($2::text[])"
# The residents living in a compound (of one building when $3 is not null), from the directory.
LIVING_IN = """
SELECT resident, household, community, compound, building FROM quarantine.dir_residents
WHERE community = $1 AND compound = $2 AND ($3::text IS NULL OR building = $3) AND NOT moved_out
ORDER BY building, household, resident
"""
# One statement for a sample's row, taken or its result recorded: a batch keeps one command's
# sample and another's result of the same resident in order whichever comes first.
UPSERT_ROUND_SAMPLE = """
INSERT INTO quarantine.round_samples (screening, resident, community, taken_at, stay_in, result)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (screening, resident) DO UPDATE SET
    taken_at = coalesce(quarantine.round_samples.taken_at, EXCLUDED.taken_at),
    result = coalesce(EXCLUDED.result, quarantine.round_samples.result)
"""
CHECKINS_OF = """
SELECT stream_id, version, temperature_c, symptoms FROM quarantine.checkins WHERE stream_id = ANY($1::text[])
"""

OPEN_CASE_OF = "SELECT case_id FROM quarantine.cases WHERE resident = $1 AND open"

# The cases that owe a check-in on $1 and have neither checked in nor been marked missed on or
# after it, after case id $2 (keyset pagination: flat memory, and a restart resumes cleanly).
DUE_WITHOUT_CHECKIN = """
SELECT case_id FROM quarantine.cases
WHERE open AND stage <> 'hospital' AND case_id > $2
  AND due_from <= $1
  AND (stage <> 'monitoring' OR ends_on >= $1)
  AND (last_checkin_on IS NULL OR last_checkin_on < $1)
  AND (last_missed_on IS NULL OR last_missed_on < $1)
ORDER BY case_id
LIMIT $3
"""

MONITORING_ENDED = """
SELECT case_id, ends_on FROM quarantine.cases
WHERE open AND stage = 'monitoring' AND ends_on < $1 AND case_id > $2
ORDER BY case_id
LIMIT $3
"""

# The home cases whose planned last day is $1, after case id $2, as CASES_BY_ID gives them: the
# auto-release policy's candidates (keyset pagination).
HOME_ENDING = """
SELECT case_id, resident, community, household, compound, building, kind, reason, stage,
       starts_on, ends_on, due_from, opened_at, closed_on, admitted_on
FROM quarantine.cases WHERE open AND stage = 'home' AND ends_on = $1 AND case_id > $2
ORDER BY case_id
LIMIT $3
"""

# What the check-in days' streams hold, by event type (the auto-release policy's reading of them).
TYPES_IN_STREAMS = "SELECT stream_id, type FROM quarantine.events WHERE stream_id = ANY($1::text[])"
