"""The logistics service's own tables, written in the same transaction as the events they follow.

``stock`` holds the never-negative rule (read under a lock on the community's store by the
command that decides on it, with a CHECK as the last line of defence); the others are what the queries and the
daily scheduler read. Each table has ONE write statement, a full-state upsert (or, for stock, a
signed delta): the command runtime groups a batch's writes by statement, so two statements on one
table could run out of order within a batch; one statement keeps every row's changes in order.
"""
from __future__ import annotations

import json

from services.logistics.domain import GroupOrder, Plan, Request, Visits, Volunteer, Welfare
from shared import directory

SCHEMA = "logistics"



def sealed_areas_ddl(schema: str) -> str:
    """The seal consumer's copy of the areas under seal, in ``schema`` (``cordon reconcile``
    replays it into a scratch schema)."""
    return f"""-- Areas under seal now: a household the directory learns of only after the seal still gets fed.
CREATE TABLE IF NOT EXISTS {schema}.sealed_areas (
    community       text NOT NULL,
    cause           text NOT NULL,
    compound        text NOT NULL,
    building        text,
    event_id        text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    correlation_id  text NOT NULL,
    PRIMARY KEY (community, cause));"""


DDL = directory.ddl(SCHEMA) + """
CREATE TABLE IF NOT EXISTS logistics.stock (
    community   text NOT NULL,
    item        text NOT NULL,
    on_hand     bigint NOT NULL CHECK (on_hand >= 0),
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (community, item));
CREATE TABLE IF NOT EXISTS logistics.requests (
    request          text PRIMARY KEY,
    community        text NOT NULL,
    household        text NOT NULL,
    compound         text NOT NULL,
    building         text NOT NULL,
    kind             text NOT NULL,
    items            jsonb NOT NULL,
    note             text,
    priority         integer NOT NULL,
    priority_reasons text[] NOT NULL,
    status           text NOT NULL,
    volunteer        text,
    attempts         integer NOT NULL,
    daily_on         date,
    requested_at     timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS requests_open ON logistics.requests (community, priority DESC, requested_at)
    WHERE status IN ('open', 'assigned');
CREATE INDEX IF NOT EXISTS requests_volunteer ON logistics.requests (volunteer) WHERE status = 'assigned';
CREATE TABLE IF NOT EXISTS logistics.vouchers (
    voucher     text PRIMARY KEY,
    number      text NOT NULL UNIQUE,
    household   text NOT NULL,
    community   text NOT NULL);
CREATE SEQUENCE IF NOT EXISTS logistics.voucher_numbers;
CREATE TABLE IF NOT EXISTS logistics.plans (
    household          text PRIMARY KEY,
    community          text NOT NULL,
    causes             text[] NOT NULL,
    active             boolean NOT NULL,
    priority           integer NOT NULL,
    last_requested_on  date);
CREATE INDEX IF NOT EXISTS plans_active ON logistics.plans (priority DESC, household) WHERE active;
""" + sealed_areas_ddl(SCHEMA) + """
CREATE TABLE IF NOT EXISTS logistics.welfare_checks (
    household        text PRIMARY KEY,
    community        text NOT NULL,
    compound         text NOT NULL,
    building         text NOT NULL,
    check_id         text,
    request          text,
    vulnerabilities  text[] NOT NULL,
    open             boolean NOT NULL,
    raised_at        timestamptz,
    outcome          text,
    resolved_at      timestamptz);
-- issue 17: group orders, volunteers' teams and hours, door-to-door visits, the vulnerable list.
CREATE TABLE IF NOT EXISTS logistics.group_orders (
    "order"       text PRIMARY KEY,
    community     text NOT NULL,
    compound      text NOT NULL,
    supplier      text NOT NULL,
    items         jsonb NOT NULL,
    households    integer NOT NULL,
    status        text NOT NULL,
    gate          text,
    handed_out    integer NOT NULL,
    buildings     jsonb NOT NULL,
    placed_at     timestamptz NOT NULL,
    delivered_at  timestamptz);
CREATE INDEX IF NOT EXISTS group_orders_community ON logistics.group_orders (community, placed_at);
CREATE TABLE IF NOT EXISTS logistics.volunteers (
    volunteer      text PRIMARY KEY,
    community      text NOT NULL,
    team           text NOT NULL,
    unit_kind      text NOT NULL,
    registered_at  timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS logistics.volunteer_hours (
    id           bigserial PRIMARY KEY,
    community    text NOT NULL,
    volunteer    text NOT NULL,
    team         text,
    unit_kind    text,
    kind         text NOT NULL,
    day          date NOT NULL,
    minutes      integer NOT NULL,
    shift        text,
    recorded_at  timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS volunteer_hours_day ON logistics.volunteer_hours (community, day);
CREATE TABLE IF NOT EXISTS logistics.visits (
    household        text PRIMARY KEY,
    community        text NOT NULL,
    visits           integer NOT NULL,
    last_visit_at    timestamptz NOT NULL,
    last_outcome     text NOT NULL,
    last_contact_at  timestamptz);
-- the vulnerable list: a community's flagged residents, and each household's last delivery
CREATE INDEX IF NOT EXISTS dir_residents_vulnerable ON logistics.dir_residents (community, resident)
    WHERE cardinality(vulnerabilities) > 0;
CREATE INDEX IF NOT EXISTS requests_delivered ON logistics.requests (household, updated_at)
    WHERE status = 'delivered';
"""

# PostgreSQL checks the CHECK on the row proposed for insertion even when it then conflicts, so
# the inserted value is never negative; a negative delta can only meet an existing row (the stock
# was read and found sufficient), whose updated value the CHECK then guards.
STOCK_DELTA = """
INSERT INTO logistics.stock (community, item, on_hand, updated_at) VALUES ($1, $2, GREATEST($3::bigint, 0), $4)
ON CONFLICT (community, item) DO UPDATE
SET on_hand = logistics.stock.on_hand + $3::bigint, updated_at = EXCLUDED.updated_at"""

UPSERT_REQUEST = """
INSERT INTO logistics.requests VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (request) DO UPDATE SET status = EXCLUDED.status, volunteer = EXCLUDED.volunteer,
    attempts = EXCLUDED.attempts, updated_at = EXCLUDED.updated_at"""

INSERT_VOUCHER = "INSERT INTO logistics.vouchers VALUES ($1, $2, $3, $4)"
NEXT_VOUCHER_SERIAL = "SELECT nextval('logistics.voucher_numbers')"
VOUCHER_TAKEN = "SELECT 1 FROM logistics.vouchers WHERE voucher = $1"
VOUCHER = "SELECT household, community FROM logistics.vouchers WHERE voucher = $1"

UPSERT_PLAN = """
INSERT INTO logistics.plans VALUES ($1, $2, $3, $4, COALESCE($5::integer, 0), $6)
ON CONFLICT (household) DO UPDATE SET causes = EXCLUDED.causes, active = EXCLUDED.active,
    priority = COALESCE($5::integer, logistics.plans.priority),
    last_requested_on = GREATEST(logistics.plans.last_requested_on, EXCLUDED.last_requested_on)"""

UPSERT_WELFARE = """
INSERT INTO logistics.welfare_checks VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (household) DO UPDATE SET check_id = EXCLUDED.check_id, request = EXCLUDED.request,
    vulnerabilities = EXCLUDED.vulnerabilities, open = EXCLUDED.open, raised_at = EXCLUDED.raised_at,
    outcome = EXCLUDED.outcome, resolved_at = EXCLUDED.resolved_at"""

UPSERT_ORDER = """
INSERT INTO logistics.group_orders VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT ("order") DO UPDATE SET status = EXCLUDED.status, gate = EXCLUDED.gate,
    handed_out = EXCLUDED.handed_out, buildings = EXCLUDED.buildings, delivered_at = EXCLUDED.delivered_at"""

UPSERT_VOLUNTEER = """
INSERT INTO logistics.volunteers VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (volunteer) DO UPDATE SET community = EXCLUDED.community, team = EXCLUDED.team,
    unit_kind = EXCLUDED.unit_kind, registered_at = EXCLUDED.registered_at"""

INSERT_HOURS = """
INSERT INTO logistics.volunteer_hours (community, volunteer, team, unit_kind, kind, day, minutes, shift, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""

UPSERT_VISITS = """
INSERT INTO logistics.visits VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (household) DO UPDATE SET visits = EXCLUDED.visits, last_visit_at = EXCLUDED.last_visit_at,
    last_outcome = EXCLUDED.last_outcome, last_contact_at = EXCLUDED.last_contact_at"""

#: Active plans whose food for the day ($1) is not yet requested, the most vulnerable first.
DUE_PLANS = """
SELECT household FROM logistics.plans
WHERE active AND (last_requested_on IS NULL OR last_requested_on < $1)
ORDER BY priority DESC, household"""

#: The seal consumer's two writes of ``{schema}.sealed_areas`` (format the schema in).
SEAL_AREA = """
INSERT INTO {schema}.sealed_areas VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (community, cause) DO NOTHING"""
LIFT_AREA = "DELETE FROM {schema}.sealed_areas WHERE community = $1 AND cause = $2"

#: Households of sealed areas that have no daily supply for that seal yet.
UNFED_IN_SEALED = """
SELECT s.community, s.compound, s.building, s.event_id, s.occurred_at, s.correlation_id, h.household,
       ARRAY(SELECT DISTINCT v FROM logistics.dir_residents r, unnest(r.vulnerabilities) v
             WHERE r.household = h.household AND NOT r.moved_out) AS vulnerabilities
FROM logistics.sealed_areas s
JOIN logistics.dir_households h
  ON h.community = s.community AND h.compound = s.compound AND (s.building IS NULL OR h.building = s.building)
LEFT JOIN logistics.plans p ON p.household = h.household AND s.cause = ANY (p.causes)
WHERE p.household IS NULL
ORDER BY s.event_id, h.household"""

#: The community's store, locked until the transaction ends (an advisory lock: it needs no row).
LOCK_STORE = "SELECT pg_advisory_xact_lock(hashtextextended('logistics.stock:' || $1::text, 0))"

PEEK_STOCK = "SELECT item, on_hand FROM logistics.stock WHERE community = $1 AND item = ANY($2::text[])"


def request_row(r: Request, at) -> tuple:
    items = json.dumps([{"item": line.item, "qty": line.qty} for line in r.items])
    return (r.request, r.community, r.household, r.compound, r.building, r.kind, items, r.note,
            r.priority, list(r.reasons), r.status, r.volunteer, r.attempts, r.daily_on, r.requested_at, at)


def plan_row(p: Plan, priority: int | None, requested_on) -> tuple:
    return (p.household, p.community, list(p.causes), p.active, priority, requested_on)


def welfare_row(w: Welfare) -> tuple:
    check = w.open
    return (w.household, w.community, w.compound, w.building, check.check if check else None,
            check.request if check else None, list(check.vulnerabilities) if check else [],
            check is not None, check.raised_at if check else None, w.last_outcome, w.resolved_at)


def order_row(o: GroupOrder) -> tuple:
    items = json.dumps([{"item": line.item, "qty": line.qty} for line in o.items])
    return (o.order, o.community, o.compound, o.supplier, items, o.households, o.status, o.gate, o.handed_out,
            json.dumps(dict(o.buildings)), o.placed_at, o.delivered_at)


def volunteer_row(v: Volunteer, at) -> tuple:
    return (v.volunteer, v.community, v.team, v.unit_kind, at)


def visits_row(v: Visits) -> tuple:
    return (v.household, v.community, v.visits, v.last_visit_at, v.last_outcome, v.last_contact_at)
