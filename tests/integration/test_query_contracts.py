"""Every query answers what its contract says: for each query of ``shared.contracts.queries.QUERIES``,
the real service that answers it, on real NATS and PostgreSQL with a small committee recorded
through the commands, gets the query's request struct (encoded whole, every field given) and
answers JSON that ``msgspec.convert`` turns into the query's reply struct. The reply structs forbid
unknown fields and require theirs, so a field a handler renames, adds or drops fails here; each
answer also holds rows, so the nested row structs are checked too. A query given a field it does
not take answers ``invalid`` naming it.

The committee is built once for the module: queries write nothing."""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import msgspec
import pytest

from services.audit.app import spec as audit_spec
from services.checkpoint.app import spec as checkpoint_spec
from services.logistics.app import spec as logistics_spec
from services.quarantine.app import spec as quarantine_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.contracts import queries as q
from shared.contracts.queries import QUERIES
from shared.embedded import ensure_database
from shared.identity import Identity
from tests.support.board import caught_up
from tests.support.bus import operator_config, start_secure_nats
from tests.support.cordon import eventually, prc_id
from tests.support.identities import NANGONG, As, user_key
from tests.support.logistics import start_services
from tests.support.quarantine import Clock, at, day

pytestmark = pytest.mark.integration

VOLUNTEER = "vol-1"
SERVICES = (registry_spec, checkpoint_spec, quarantine_spec, logistics_spec, views_spec, audit_spec)


@dataclass
class Committee:
    nc: Any
    resident: str
    household: str
    #: a visitor's passage
    passage: str


@pytest.fixture(scope="module")
async def committee(pg_server, tmp_path_factory):
    """Nangong with a compound, a household of an elderly resident living alone, two identities
    (one revoked), gate shifts (one ended, one running), a home quarantine case with a check-in,
    stock, a request the store can meet (out with a volunteer after a door no one answered: a
    welfare check) and one it cannot; every service running, the views and the audit log caught up."""
    server = await start_secure_nats(tmp_path_factory.mktemp("nats"))
    dsn = await ensure_database(pg_server.dsn, f"test_{uuid.uuid4().hex[:16]}")
    config = operator_config(server.url, pg_dsn=dsn, backdate_days=0)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.stop)
        nc, db = await start_services(stack, SERVICES, config, Clock(at(1, "20:00")), server.url, dsn)
        resident, passage, household = await _record(As(nc, None), db)
        await caught_up(nc, db)
        yield Committee(nc, resident, household, passage)


async def _record(operator: As, db) -> tuple[str, str, str]:
    place = dict(community=NANGONG, compound="nangong-1")
    await operator.ok("registry", "register_compound", **place, name="南宫小区", buildings=["b1"], gates=["g1"])
    reply = await operator.ok("registry", "register_household", **place, building="b1", address="b1 room 1")
    household = reply["events"][0]["data"]["household"]
    reply = await operator.ok("registry", "register_resident", household=household, name="王小伟",
                              id_number=prc_id(901), birth_year=1940, vulnerabilities=["elderly_alone"])
    resident = reply["events"][0]["data"]["resident"]
    await operator.ok("registry", "register_pending_arrival", **place, name="赵六一", id_number=prc_id(902),
                      origin="温州", arrived_on=str(day(1)), transport={"kind": "train"}, city_class="A",
                      risk_area_visited=False, occurred_at=at(1, "09:00").isoformat())
    await operator.ok("registry", "grant_identity", identity="li-wei", role="staff", scope=NANGONG,
                      public_key=user_key(1))
    await operator.ok("registry", "grant_identity", identity="arrivals-app", role="city-system",
                      grants=["qry:rollup"], public_key=user_key(2))
    await operator.ok("registry", "revoke_identity", identity="arrivals-app", reason="replaced")
    for table in ("checkpoint.dir_compounds", "quarantine.dir_residents", "logistics.dir_households"):
        await eventually(lambda: db.fetchval(f"SELECT count(*) FROM {table}"), what=table)
    for staff, start, end in (("staff:chen", "08:00", "14:30"), ("staff:wu", "14:30", None)):
        await operator.ok("checkpoint", "start_shift", community=NANGONG, gate="g1", staff=staff,
                          occurred_at=at(1, start).isoformat())
        if end:
            await operator.ok("checkpoint", "end_shift", community=NANGONG, gate="g1", staff=staff,
                              occurred_at=at(1, end).isoformat())
    await operator.ok("quarantine", "open_case", community=NANGONG, resident=resident, kind="home",
                      reason="close_contact", starts_on=str(day(1)), case="case-1")
    await operator.ok("quarantine", "record_checkin", case="case-1", on=str(day(1)), temperature_c=36.6)
    await operator.ok("quarantine", "schedule_screening", **place, on=str(day(1)), screening="round-1",
                      slots=[{"label": "everyone", "from": "19:00", "to": "21:00"}], stay_in_until_result=True)
    await operator.ok("quarantine", "issue_sample_codes", screening="round-1", residents=[resident])
    await operator.ok("quarantine", "record_sample", screening="round-1", resident=resident)
    await operator.ok("logistics", "receive_stock", community=NANGONG, items=[{"item": "rice", "qty": 5}],
                      source="allocation")
    food = (await operator.ok("logistics", "request_supplies", community=NANGONG, household=household,
                              kind="food", items=[{"item": "rice", "qty": 1}]))["request"]
    await operator.ok("logistics", "request_supplies", community=NANGONG, household=household, kind="food",
                      items=[{"item": "rice", "qty": 50}], note="for the whole building")
    await operator.ok("logistics", "assign_delivery", request=food, volunteer=VOLUNTEER)
    await operator.ok("logistics", "record_delivery", request=food, outcome="no_answer")
    await operator.ok("logistics", "assign_delivery", request=food, volunteer=VOLUNTEER)
    await operator.ok("logistics", "place_group_order", community=NANGONG, compound="nangong-1", supplier="盒马鲜生",
                      items=[{"item": "vegetable-box", "qty": 1}], households=1)
    await operator.ok("logistics", "register_volunteer", volunteer=VOLUNTEER, community=NANGONG,
                      team="party-branch-3", unit_kind="party_branch")
    await operator.ok("logistics", "record_volunteer_hours", volunteer=VOLUNTEER, community=NANGONG,
                      on=str(day(1)), kind="delivery", hours=2)
    visit = await operator.ok("checkpoint", "check_passage", **place, gate="g1", direction="in", temperature_c=36.5,
                              occurred_at=at(1, "10:00").isoformat(), visitor={
                                  "name": "张三丰", "phone": "13800001111", "host_household": household,
                                  "purpose": "送药"})
    # issue 17: groceries at the drop point for the household in home quarantine (carried to the door)
    await operator.ok("checkpoint", "drop_parcel", **place, gate="g1", household=household, kind="groceries",
                      occurred_at=at(1, "11:00").isoformat())
    # an arrival waiting for verification, a neighbour's tip-off (issue 17's work lists)
    await operator.ok("registry", "register_arrival", resident=resident, origin="Wuhan", arrived_on=str(day(1)),
                      transport={"kind": "train"}, visited=[], city_class="A", risk_area_visited=True)
    await operator.ok("registry", "record_tip_off", community=NANGONG, compound="nangong-1", household=household,
                      kind="not_staying_home", note="seen going out every afternoon")
    return resident, visit["passage"], household


@dataclass(frozen=True)
class Case:
    """A query asked with ``request(committee)``; ``held(reply)`` says the reply holds rows to check."""

    view: str
    request: Callable[[Committee], q.Request]
    held: Callable[[Any], object]
    #: who asks (None: from inside Cordon)
    asker: Identity | None = None


CASES = {
    "community": Case("community", lambda c: q.CommunityQuery(community=NANGONG, on=day(1)),
                      lambda r: r.residents and r.in_quarantine.home and r.stock),
    "rollup": Case("rollup", lambda c: q.RollupQuery(scope="changning", on=day(1)),
                   lambda r: r.communities == 1 and r.detail is None),
    "rollup with detail": Case("rollup", lambda c: q.RollupQuery(scope="city", on=day(1), detail=True),
                               lambda r: r.detail.rows),
    "timeline": Case("timeline", lambda c: q.TimelineQuery(resident=c.resident), lambda r: r.events),
    "audit": Case("audit", lambda c: q.AuditQuery(community=NANGONG, limit=1000), lambda r: r.rows),
    "health": Case("health", lambda c: q.HealthQuery(),
                   lambda r: set(r.services) == {"registry", "checkpoint", "quarantine", "logistics", "views",
                                                 "audit"}),
    "registry.identities": Case("registry.identities", lambda c: q.IdentitiesQuery(),
                                lambda r: {i.name: i.revoked_at is None for i in r.identities} == {
                                    "li-wei": True, "arrivals-app": False}),
    "registry.contact": Case("registry.contact",
                             lambda c: q.ContactQuery(resident=c.resident, household=None, purpose="a welfare call"),
                             lambda r: r.contacts and r.contacts[0].name == "王小伟" and r.viewed,
                             Identity(name="li-wei", role="staff", scope=NANGONG)),
    "registry.names": Case("registry.names",
                           lambda c: q.NamesQuery(community=NANGONG, residents=c.resident),
                           lambda r: [n.display_name for n in r.residents] == ["王*伟"]),
    "registry.awaiting_verification": Case(
        "registry.awaiting_verification", lambda c: q.AwaitingVerificationQuery(community=NANGONG),
        lambda r: r.count == 1 and r.arrivals[0].display_name == "王*伟" and r.next is None),
    "registry.household": Case("registry.household", lambda c: q.HouseholdQuery(household=c.household),
                               lambda r: [x.vulnerabilities for x in r.residents] == [["elderly_alone"]]),
    "registry.compound_households": Case(
        "registry.compound_households", lambda c: q.CompoundHouseholdsQuery(community=NANGONG, compound="nangong-1"),
        lambda r: [(h.household, h.residents) for h in r.households] == [(r.households[0].household, 1)]),
    "registry.tip_offs": Case("registry.tip_offs", lambda c: q.TipOffsQuery(community=NANGONG),
                              lambda r: r.open == 1 and r.tip_offs[0].note,
                              Identity(name="li-wei", role="staff", scope=NANGONG)),
    "registry.pending_registrations": Case(
        "registry.pending_registrations", lambda c: q.PendingRegistrationsQuery(community=NANGONG),
        lambda r: [(p.display_name, p.compound) for p in r.pending] == [("赵*一", "nangong-1")] and r.next is None),
    "checkpoint.shifts": Case("checkpoint.shifts", lambda c: q.ShiftsQuery(community=NANGONG, on=day(1)),
                              lambda r: r.days and r.person_times == 2 and r.open_shifts == 1),
    "checkpoint.visitor_contact": Case(
        "checkpoint.visitor_contact", lambda c: q.VisitorContactQuery(passage=c.passage, purpose="contact tracing"),
        lambda r: r.name == "张三丰" and r.viewed, Identity(name="li-wei", role="staff", scope=NANGONG)),
    "checkpoint.parcels": Case("checkpoint.parcels", lambda c: q.ParcelsQuery(community=NANGONG, gate="g1"),
                               lambda r: r.count == 1 and r.parcels[0].to_the_door and r.next is None),
    "quarantine.cases": Case("quarantine.cases", lambda c: q.CasesQuery(community=NANGONG, status="all"),
                             lambda r: r.cases and r.cases[0].checkins == 1),
    "quarantine.history": Case("quarantine.history", lambda c: q.CaseHistoryQuery(resident=c.resident),
                               lambda r: r.cases and r.events),
    "quarantine.screening_status": Case(
        "quarantine.screening_status",
        lambda c: q.ScreeningStatusQuery(community=NANGONG, screening="round-1", status="staying_in"),
        lambda r: r.residents and r.residents[0].code_issued and r.residents[0].taken_at and r.counts.staying_in),
    "quarantine.due_for_release": Case(
        "quarantine.due_for_release", lambda c: q.DueForReleaseQuery(community=NANGONG, on=day(15)),
        lambda r: [(x.case, x.days_overdue) for x in r.cases] == [("case-1", 1)]),
    "quarantine.checkins_due": Case(
        "quarantine.checkins_due", lambda c: q.CheckinsDueQuery(community=NANGONG, on=day(2)),
        lambda r: [x.case for x in r.cases] == ["case-1"] and r.due_by.hour == 18),
    "logistics.requests": Case("logistics.requests", lambda c: q.OpenRequestsQuery(community=NANGONG),
                               lambda r: r.on_hand and any(x.missing for x in r.requests)),
    "logistics.assignments": Case("logistics.assignments", lambda c: q.AssignmentsQuery(volunteer=VOLUNTEER),
                                  lambda r: r.assignments),
    "logistics.stock": Case("logistics.stock", lambda c: q.StockQuery(community=NANGONG), lambda r: r.on_hand),
    "logistics.welfare": Case("logistics.welfare", lambda c: q.WelfareQuery(community=NANGONG),
                              lambda r: r.checks),
    "logistics.group_orders": Case("logistics.group_orders", lambda c: q.GroupOrdersQuery(community=NANGONG),
                                   lambda r: r.orders),
    "logistics.volunteer_hours": Case("logistics.volunteer_hours",
                                      lambda c: q.VolunteerHoursQuery(community=NANGONG, on=day(1)),
                                      lambda r: r.teams),
    "logistics.vulnerable": Case("logistics.vulnerable", lambda c: q.VulnerableQuery(community=NANGONG),
                                 lambda r: r.residents),
}


def test_every_query_of_the_contract_is_asked_here():
    assert {case.view for case in CASES.values()} == set(QUERIES)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_the_reply_of_every_query_is_its_contracts_reply(committee, name):
    case = CASES[name]
    contract = QUERIES[case.view]
    # Given the query's request struct, every field given (defaults included)
    request = case.request(committee)
    assert type(request) is contract.request
    # When the real service answers it
    reply = await As(committee.nc, case.asker).query(case.view, **msgspec.to_builtins(request))
    # Then the JSON is the reply struct, rows included
    assert reply["ok"] is True, reply
    answer = msgspec.convert(reply, contract.reply)
    assert case.held(answer), answer
    # and the struct is strict: a field more, or one missing, is not that reply
    with pytest.raises(msgspec.ValidationError, match="unknown field `renamed`"):
        msgspec.convert({**reply, "renamed": 1}, contract.reply)
    required = next(f for f in msgspec.structs.fields(contract.reply) if f.required and f.encode_name != "ok")
    with pytest.raises(msgspec.ValidationError, match=f"missing required field `{required.encode_name}`"):
        msgspec.convert({k: v for k, v in reply.items() if k != required.encode_name}, contract.reply)


@pytest.mark.parametrize("view", sorted(QUERIES))
async def test_every_query_given_a_field_it_does_not_take_answers_invalid_naming_it(committee, view):
    case = next(c for c in CASES.values() if c.view == view)
    reply = await As(committee.nc, case.asker).query(view, **msgspec.to_builtins(case.request(committee)),
                                                     colour="red")
    assert (reply["ok"], reply["error"]["code"], reply["error"]["field"]) == (False, "invalid", "colour"), reply
