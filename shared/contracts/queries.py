"""Every query of the message API as wire types: what each ``cordon.qry.<view>`` takes and answers.

The request structs are what the handlers decode (strictly: an unknown field is ``invalid``); the
reply structs describe, field for field, the JSON each handler answers with, and are as strict
(``forbid_unknown_fields``): a test converts every live reply to its struct
(tests/integration/test_query_contracts.py), so a field renamed or dropped in a handler fails it.
:data:`QUERIES` is the one registry both documents read (the AsyncAPI document of the bus,
``shared/asyncapi.py``, and the OpenAPI document of the web gateway, ``shared/openapi.py``).

A refusal is not a reply of the view: it is the commands' ``CommandRefused`` body
(``{"ok": false, "error": {...}}``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from shared import wire
from shared.envelope import Envelope
from shared.contracts.checkpoint import ParcelKind
from shared.contracts.logistics import HoursKind, ItemLine, OrderLine, PriorityReason, RequestKind, UnitKind
from shared.contracts.quarantine import CaseKind, CaseReason
from shared.contracts.registry import CityClass, TipOffKind, TipOffOutcome, Vulnerability

MAX_TIMELINE = 5000
MAX_AUDIT = 10000
MAX_CASES = 5000
MAX_REQUESTS = 1000
MAX_NAMES = 100
MAX_PARCELS = 1000
#: The longest page of a registry work list (arrivals waiting, a compound's households, tip-offs).
MAX_WORK = 1000
#: The longest a board or report waits for the views to reach ``at_least`` before answering anyway.
AT_LEAST_WAIT_S = 2.0


def _meta(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


Community = Annotated[str, _meta("a community path: district.street.committee (changning.chengjiaqiao.nangong)")]
Day = Annotated[date, _meta("a day of the city's calendar (CORDON_TIMEZONE), YYYY-MM-DD")]
Position = Annotated[int, _meta("the sequence of stream CORDON's last event this answer includes")]
AtLeast = Annotated[int, _meta(
    "answer only once the views have applied stream CORDON up to this sequence (e.g. the sequence of an "
    f"event just seen), waiting at most {AT_LEAST_WAIT_S:g} s; then answer anyway with behind true", ge=0)]
Behind = Annotated[bool, _meta("true when at_least was asked and the views had not reached it in time: "
                               "the answer reflects position, which is below at_least")]
Count = Annotated[int, msgspec.Meta(ge=0)]
Stock = Annotated[dict[str, int], _meta("on hand by catalogue item (rice, masks, ...)")]


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every query's request: strict, keyword-only."""


class Reply(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every query's answer (``ok`` true: a refusal is ``CommandRefused``)."""

    ok: Literal[True]


class Row(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the rows and nested objects of the replies."""


# -- views: community, rollup, timeline -----------------------------------------------------------


class CommunityQuery(Request):
    community: Community
    on: Annotated[date | None, _meta("the day whose board to show (YYYY-MM-DD, the city's calendar); "
                                     "default today")] = None
    at_least: AtLeast | None = None


class RollupQuery(Request):
    scope: Annotated[str, _meta("city, a district, district.street or a whole community path")]
    on: Annotated[date | None, _meta("the day of the report (YYYY-MM-DD); default today")] = None
    detail: Annotated[bool, _meta("also return one row per community (columns + rows), as the CSV "
                                  "report does")] = False
    at_least: AtLeast | None = None


class TimelineQuery(Request):
    resident: Annotated[str, _meta("the resident's opaque id")]
    limit: Annotated[int, _meta("at most this many events, oldest first", ge=1, le=MAX_TIMELINE)] = 1000


class Arrivals(Row):
    last_14_days: Count
    pending_verification: Count


class InQuarantine(Row):
    home: Count
    centralized: Count
    monitoring: Count
    hospital: Count
    total: Count


class SealedAreas(Row):
    compounds: Count
    buildings: Count


class PassagesToday(Row, rename={"in_": "in"}):
    in_: Count
    out: Count
    denied: Count


class VehiclesToday(Row):
    checked: Count
    denied: Count


class ParcelsAtTheGates(Row):
    dropped_today: Count
    collected_today: Count
    waiting: Annotated[int, _meta("at the drop points at the end of the day, not yet collected", ge=0)]


class OutingsToday(Row):
    """Residents let out, by where they said they were going (check_passage's destination)."""

    work: Count
    shopping: Count
    medical: Count
    family: Count
    other: Count
class CallsToday(Row):
    made: Annotated[int, _meta("screening calls to returnees made today", ge=0)]
    reached: Annotated[int, _meta("of them, the returnee answered (at home or elsewhere)", ge=0)]


class TipOffs(Row):
    open: Annotated[int, _meta("tip-offs from neighbours not yet followed up", ge=0)]
    followed_up_today: Annotated[int, _meta("tip-offs followed up today", ge=0)]


class Board(Reply):
    """The board's figures as staff read them (CONTRACT.md), shared by the community's board and
    the rollup of a scope (summed over its communities)."""

    residents: Count
    households: Count
    arrivals: Arrivals
    in_quarantine: InQuarantine
    sealed_areas: SealedAreas
    active_passes: Count
    passages_today: PassagesToday
    fevers_today: Count
    checkins_missed_today: Count
    positive_results_today: Count
    open_requests: Count
    deliveries_today: Count
    welfare_checks_open: Count
    households_on_daily_supply: Count
    screening_results_pending: Annotated[int, _meta("residents sampled in a screening round whose result "
                                                    "is not recorded yet", ge=0)]
    stock: Stock
    group_orders_open: Annotated[int, _meta("group orders not yet handed out to every household", ge=0)]
    group_orders_delivered_today: Annotated[int, _meta("group orders delivered to a gate on the day", ge=0)]
    volunteer_hours_today: Annotated[dict[str, float], _meta(
        "volunteers' hours on the day per team ((none): no registered team), gate shifts included")]
    vehicles_today: VehiclesToday
    parcels: ParcelsAtTheGates
    outings_today: OutingsToday
    calls_today: CallsToday
    tip_offs: TipOffs
    figures: Annotated[dict[str, int], _meta(
        "the same figures flat, as the report's columns (residents, households, arrivals_14d, ..., "
        "stock.<item>)")]
    on: Day
    position: Position
    behind: Behind


class CommunityReply(Board):
    community: Community


class RollupDetail(Row):
    columns: Annotated[list[str], _meta("the report's columns, stock.<item> columns last")]
    rows: Annotated[list[list[str | int]], _meta("one row per community: its path, then one figure "
                                                 "per column")]


class RollupReply(Board):
    scope: str
    communities: Annotated[int, _meta("how many communities the scope holds", ge=0)]
    detail: Annotated[RollupDetail | None, _meta("only when detail was asked")] = None


class TimelineEvent(Row):
    seq: Annotated[int, _meta("the event's stream sequence")]
    event_id: str
    type: str
    occurred_at: datetime
    actor: str
    community: Community
    data: Annotated[dict[str, Any], _meta("the event's data (schema by type, see the events)")]


class TimelineReply(Reply):
    resident: str
    position: Position
    events: list[TimelineEvent]
    truncated: Annotated[bool, _meta("more events than limit: the first limit are given")]


# -- audit ----------------------------------------------------------------------------------------


class AuditQuery(Request):
    actor: Annotated[str | None, _meta("who recorded it: staff:li-wei, system:..., city:...")] = None
    resident: Annotated[str | None, _meta("events naming this resident")] = None
    community: Annotated[str | None, _meta("a community or any prefix of the tree (a district, "
                                           "district.street); default: everything the caller reads")] = None
    type: Annotated[str | None, _meta("an event type (ArrivalVerified)")] = None
    since: Annotated[wire.AwareDatetime | None, _meta("occurred at or after (RFC 3339 with a zone)")] = None
    until: Annotated[wire.AwareDatetime | None, _meta("occurred before (RFC 3339 with a zone)")] = None
    limit: Annotated[int, _meta("at most this many rows, oldest first", ge=1, le=MAX_AUDIT)] = 100
    newest_first: Annotated[bool, _meta("the newest `limit` rows, newest first (default: the oldest, "
                                        "oldest first)")] = False


class AuditRow(Row):
    n: Annotated[int, _meta("the row's place in the hash chain")]
    stream_seq: int
    subject: str
    event_id: str | None
    type: str | None
    community: str | None
    actor: str | None
    resident: str | None
    stream_id: str | None
    occurred_at: datetime | None
    hash: Annotated[str, _meta("sha256 of the previous row's hash and this row, hex")]
    envelope: Annotated[Envelope, _meta("the message as it was on the stream")]


class AuditReply(Reply):
    rows: list[AuditRow]


# -- health ---------------------------------------------------------------------------------------


class HealthQuery(Request):
    """No fields."""


class ConsumerStatus(Row):
    lag: Annotated[int | None, _meta("stream messages behind (null: not known yet)")]
    applied: int
    parked: Annotated[int, _meta("messages parked in dead_letters (or undecodable, for a follower)")]
    last_error: str | None
    standby: Annotated[bool, _meta("another instance leads this consumer")]


class InstanceStatus(Row):
    ok: Annotated[bool, _meta("false while the instance has a problem or an error")]
    service: str
    instance: Annotated[str, _meta("host:pid")]
    outbox_depth: Annotated[int | None, _meta("command services: events not yet on the stream")] = None
    committed: int | None = None
    published: int | None = None
    relay_error: str | None = None
    consumers: Annotated[dict[str, ConsumerStatus], _meta("per durable consumer and stream follower")] = {}
    problems: Annotated[list[str], _meta("what health found wrong (the stream created anew, ...)")] = []
    error: Annotated[str | None, _meta("why the status could not be read (PostgreSQL away, ...)")] = None


class HealthReply(Reply):
    ok: Annotated[bool, _meta("every instance that answered is ok")]
    services: Annotated[dict[str, list[InstanceStatus]], _meta("service -> its running instances")]


# -- registry -------------------------------------------------------------------------------------


class IdentitiesQuery(Request):
    """No fields."""


class IdentityRow(Row):
    name: str
    role: Literal["staff", "officer", "city-system", "gate", "operator", "service"]
    scope: str
    community: str | None
    compound: str | None
    grants: list[str]
    public_key: Annotated[str, _meta("the user's nkey (U...)")]
    granted_at: datetime
    granted_by: str
    revoked_at: Annotated[datetime | None, _meta("null while the identity is live")]
    revoked_by: str | None
    reason: Annotated[str | None, _meta("why it was revoked")]


class IdentitiesReply(Reply):
    identities: Annotated[list[IdentityRow], _meta("one row per key ever granted, oldest grant first")]


class ContactQuery(Request, kw_only=True):
    """Exactly one of resident and household."""

    resident: Annotated[str | None, _meta("the resident's opaque id")] = None
    household: Annotated[str | None, _meta("a household's id: each of its residents")] = None
    purpose: Annotated[str, _meta("why (at least 5 characters): recorded with the read, in "
                                  "PersonalDataViewed", min_length=1, max_length=wire.MAX_NOTE)]


class Contact(Row):
    resident: str
    household: str
    name: Annotated[str | None, _meta("null once the resident is erased")]
    phone: Annotated[str | None, _meta("null when none was given, or once erased")]
    erased: Annotated[bool, _meta("the resident's data key is deleted: nothing personal is left")]
    birth_year: Annotated[int | None, _meta("null once erased (or not known: registered before it was kept)")] = None
    address: Annotated[str | None, _meta("the household's address (building and room: the door), which "
                                         "events do not carry")] = None


class ContactReply(Reply):
    community: Community
    purpose: str
    viewed: Annotated[str, _meta("the event_id of the PersonalDataViewed that records this read")]
    contacts: Annotated[list[Contact], _meta("oldest registration first")]


class NamesQuery(Request):
    """Masked names only (the ones ResidentRegistered carries): no read is recorded for them."""

    community: Community
    residents: Annotated[str | None, _meta(f"resident ids, comma-separated (at most {MAX_NAMES})")] = None
    households: Annotated[str | None, _meta(f"household ids, comma-separated (at most {MAX_NAMES}): "
                                            "each of their residents")] = None


class MaskedName(Row):
    resident: str
    household: str
    display_name: Annotated[str, _meta("masked (王*伟), as ResidentRegistered carries it")]


class NamesReply(Reply):
    community: Community
    residents: Annotated[list[MaskedName], _meta("those of the community asked, oldest registration first; "
                                                 "an id of another community or none is left out")]


# -- registry: the committee's work lists (issue 17) -------------------------------------------------


class AwaitingVerificationQuery(Request):
    community: Community
    limit: Annotated[int, _meta("arrivals per page", ge=1, le=MAX_WORK)] = 200
    after: Annotated[str, _meta("the next of the previous page: arrivals waiting longer come before it")] = ""


class WaitingArrival(Row):
    arrival: str
    resident: str
    display_name: Annotated[str | None, _meta("masked (王*伟)")]
    household: str
    compound: str
    building: str
    arrived_on: date
    city_class: CityClass
    registered_at: datetime
    waited_hours: Annotated[float, _meta("hours since registered_at by the registry's clock, one decimal", ge=0)]


class AwaitingVerificationReply(Reply):
    community: Community
    as_of: Annotated[datetime, _meta("the registry's time the waits are counted to")]
    count: Annotated[int, _meta("every arrival of the community waiting, not only this page", ge=0)]
    arrivals: Annotated[list[WaitingArrival], _meta("oldest registration first")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


class HouseholdQuery(Request):
    household: Annotated[str, _meta("the household's id")]


class HouseholdResident(Row):
    resident: str
    display_name: Annotated[str | None, _meta("masked (王*伟)")]
    vulnerabilities: Annotated[list[Vulnerability], _meta("as registered or last updated (update_resident)")]
    moved_out: bool
    erased: Annotated[bool, _meta("the resident's data key is deleted")]


class HouseholdReply(Reply):
    household: str
    community: Community
    compound: str
    building: str
    residents: Annotated[list[HouseholdResident], _meta("oldest registration first, moved out included")]


class CompoundHouseholdsQuery(Request):
    community: Community
    compound: Annotated[str, _meta("the compound's id in the community")]
    limit: Annotated[int, _meta("households per page", ge=1, le=MAX_WORK)] = 200
    after: Annotated[str, _meta("the next of the previous page: households after this id")] = ""


class CompoundHousehold(Row):
    household: str
    building: str
    residents: Annotated[int, _meta("living there now (not moved out, not erased)", ge=0)]


class CompoundHouseholdsReply(Reply):
    community: Community
    compound: str
    households: Annotated[list[CompoundHousehold], _meta("in household id order")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


class TipOffsQuery(Request):
    community: Community
    open: Annotated[bool | None, _meta("true: open only; false: followed up only; default both, open first")] = None
    limit: Annotated[int, _meta("at most this many", ge=1, le=MAX_WORK)] = 200


class TipOffRow(Row):
    tip_off: str
    compound: str
    building: str | None
    household: str | None
    kind: TipOffKind
    note: Annotated[str | None, _meta("what was reported, as staff wrote it: to the community's own staff only")]
    recorded_at: datetime
    recorded_by: str
    outcome: Annotated[TipOffOutcome | None, _meta("null while open")]
    follow_up_note: Annotated[str | None, _meta("to the community's own staff only")]
    followed_up_at: datetime | None
    followed_up_by: str | None


class TipOffsReply(Reply):
    community: Community
    open: Annotated[int, _meta("open tip-offs of the community, all of them", ge=0)]
    tip_offs: Annotated[list[TipOffRow], _meta("open first, then oldest first")]


#: Most pending registrations a page of ``registry.pending_registrations`` lists.
MAX_PENDING = 1000


class PendingRegistrationsQuery(Request):
    community: Community
    limit: Annotated[int, _meta("registrations per page", ge=1, le=MAX_PENDING)] = 100
    after: Annotated[str, _meta("the next of the previous page: registrations after this arrival id")] = ""


class PendingRegistrationRow(Row):
    arrival: Annotated[str, _meta("the arrival's id, reserved: complete_registration {arrival, household}")]
    compound: str | None
    building: str | None
    display_name: Annotated[str, _meta("masked (王*伟)")]
    arrived_on: Day
    city_class: CityClass
    registered_at: datetime


class PendingRegistrationsReply(Reply):
    community: Community
    pending: Annotated[list[PendingRegistrationRow], _meta("waiting for completion at the door, oldest first")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


# -- checkpoint -----------------------------------------------------------------------------------


class ShiftsQuery(Request, rename={"from_": "from"}):
    community: Community
    on: Annotated[date | None, _meta("one day (default today); not with from/to")] = None
    from_: Annotated[date | None, _meta("first day of a range (inclusive, at most 93 days)")] = None
    to: Annotated[date | None, _meta("last day of a range (inclusive; default today)")] = None


class ShiftFigures(Row):
    person_times: Annotated[int, _meta("shifts started", ge=0)]
    people: Annotated[int, _meta("distinct staff on duty", ge=0)]
    hours: Annotated[float, _meta("hours of the shifts that ended", ge=0)]
    open_shifts: Annotated[int, _meta("shifts still running", ge=0)]


class ShiftDay(ShiftFigures):
    on: Day


class ShiftsReply(Reply, rename={"from_": "from"}):
    community: Community
    from_: Day
    to: Day
    time_zone: Annotated[str, _meta("the city's time zone the days are counted in")]
    person_times: Annotated[int, _meta("over the days: shifts started", ge=0)]
    people: Annotated[int, _meta("over the days: distinct staff on duty", ge=0)]
    hours: Annotated[float, _meta("over the days: hours of the shifts that ended", ge=0)]
    open_shifts: Annotated[int, _meta("over the days: shifts still running", ge=0)]
    days: Annotated[list[ShiftDay], _meta("the days with shifts, in order")]


class VisitorContactQuery(Request):
    passage: Annotated[str, _meta("the passage id of the visit (check_passage's reply, the passage events)")]
    purpose: Annotated[str, _meta("why (at least 5 characters): recorded with the read, in "
                                  "VisitorContactViewed", min_length=1, max_length=wire.MAX_NOTE)]


class VisitorContactReply(Reply):
    community: Community
    compound: str
    gate: str
    passage: str
    host_household: Annotated[str, _meta("the household the visitor came to")]
    checked_at: Annotated[datetime, _meta("when the visitor was at the gate")]
    name: str
    phone: str
    visit_purpose: Annotated[str, _meta("what the visitor said they came for")]
    purpose: Annotated[str, _meta("why this read was made, as recorded")]
    viewed: Annotated[str, _meta("the event_id of the VisitorContactViewed that records this read")]


class ParcelsQuery(Request):
    community: Community
    compound: Annotated[str | None, _meta("one compound's drop points only")] = None
    gate: Annotated[str | None, _meta("one gate's drop point only (with or without compound)")] = None
    uncollected: Annotated[bool, _meta("only the parcels still waiting (the drop point's work list); "
                                       "false: every parcel, collected ones too")] = True
    limit: Annotated[int, _meta("parcels per page", ge=1, le=MAX_PARCELS)] = 200
    after: Annotated[str, _meta("the next of the previous page: parcels after this parcel id")] = ""


class ParcelRow(Row):
    parcel: str
    compound: str
    gate: str
    household: str
    building: str | None
    kind: ParcelKind
    dropped_at: datetime
    collected_at: datetime | None
    resident: Annotated[str | None, _meta("the resident of the household who collected it")]
    volunteer: Annotated[str | None, _meta("the volunteer who carried it to the door")]
    to_the_door: Annotated[bool, _meta("the household is in home quarantine or its building or compound "
                                       "sealed: a volunteer carries it")]


class ParcelsReply(Reply):
    community: Community
    count: Annotated[int, _meta("parcels on this page", ge=0)]
    parcels: Annotated[list[ParcelRow], _meta("oldest first")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


# -- quarantine -----------------------------------------------------------------------------------


class CasesQuery(Request):
    community: Community
    status: Literal["open", "closed", "all"] = "open"
    limit: Annotated[int, _meta("cases per page", ge=1, le=MAX_CASES)] = 1000
    after: Annotated[str, _meta("the next of the previous page: cases after this case id")] = ""


class CaseHistoryQuery(Request):
    resident: Annotated[str, _meta("the resident's opaque id")]


class CaseRow(Row):
    case: str
    resident: str
    display_name: Annotated[str | None, _meta("masked (王*伟)")]
    household: str | None
    compound: str | None
    building: str | None
    kind: CaseKind
    reason: CaseReason
    stage: Annotated[Literal["home", "centralized", "monitoring", "hospital"],
                     _meta("where the resident is now in the case")]
    open: bool
    starts_on: date
    ends_on: Annotated[date, _meta("the planned last day of the current stage")]
    closed_on: date | None
    checkins: Count
    last_checkin_on: date | None
    missed: Annotated[int, _meta("check-ins missed", ge=0)]
    last_missed_on: date | None


class HistoryCase(CaseRow):
    community: Community


class CasesReply(Reply):
    community: Community
    status: Literal["open", "closed", "all"]
    cases: Annotated[list[CaseRow], _meta("in case id order")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


class CaseHistoryReply(Reply):
    resident: str
    cases: Annotated[list[HistoryCase], _meta("oldest first")]
    events: Annotated[list[Envelope], _meta("every event of those cases, in order")]


ScreeningList = Literal["not_sampled", "pending", "staying_in"]


class ScreeningStatusQuery(Request):
    community: Community
    screening: Annotated[str, _meta("the round's id")]
    status: Annotated[ScreeningList, _meta(
        "which work list: residents of the round's compound not sampled yet, samples whose result is "
        "pending, or the sampled told to stay in until their result is back")] = "not_sampled"
    limit: Annotated[int, _meta("residents per page", ge=1, le=MAX_CASES)] = 1000
    after: Annotated[str, _meta("the next of the previous page: residents after this resident id")] = ""


class ScreeningCounts(Row):
    residents: Annotated[int, _meta("living in the round's compound now", ge=0)]
    not_sampled: Count
    sampled: Count
    pending: Annotated[int, _meta("sampled, result not recorded yet", ge=0)]
    staying_in: Annotated[int, _meta("sampled, told to stay in, result not recorded yet", ge=0)]
    negative: Count
    positive: Count
    codes_issued: Annotated[int, _meta("registration codes printed ahead of the round", ge=0)]


class ScreeningResident(Row):
    resident: str
    display_name: Annotated[str | None, _meta("masked (王*伟)")]
    household: str | None
    building: str | None
    code_issued: Annotated[bool, _meta("a registration code was printed for the resident ahead of the round")]
    taken_at: Annotated[datetime | None, _meta("when the sample was taken; null when not sampled")]
    stay_in: Annotated[bool, _meta("told to stay in until the result is back")]


class ScreeningStatusReply(Reply):
    community: Community
    screening: str
    compound: str
    on: date
    stay_in_until_result: bool
    counts: ScreeningCounts
    status: ScreeningList
    residents: Annotated[list[ScreeningResident], _meta("in resident id order")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


# -- quarantine work lists (what staff do next) ---------------------------------------------------


class DueForReleaseQuery(Request):
    community: Community
    on: Annotated[date | None, _meta("the day (YYYY-MM-DD, the city's calendar); default today")] = None
    limit: Annotated[int, _meta("cases per page", ge=1, le=MAX_CASES)] = 1000
    after: Annotated[str, _meta("the next of the previous page (YYYY-MM-DD:case, the planned last day "
                                "and the id of the case the page ended on)")] = ""


class CheckinsDueQuery(Request):
    community: Community
    on: Annotated[date | None, _meta("the day (YYYY-MM-DD, the city's calendar); default today")] = None
    limit: Annotated[int, _meta("cases per page", ge=1, le=MAX_CASES)] = 1000
    after: Annotated[str, _meta("the next of the previous page: cases after this case id")] = ""


class DueCase(CaseRow):
    days_overdue: Annotated[int, _meta("days from the planned last day (ends_on) to the day asked: 0 "
                                       "when it ends that day", ge=0)]


class DueForReleaseReply(Reply):
    community: Community
    on: Day
    cases: Annotated[list[DueCase], _meta(
        "open cases, hospital aside, whose stage (home or centralized quarantine, monitoring) ends on or "
        "before the day: most overdue first, then by case id; release stays a staff decision (release_case)")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


class CheckinsDueReply(Reply):
    community: Community
    on: Day
    due_by: Annotated[datetime, _meta("the day's check-in hour (CORDON_CHECKIN_HOUR): after it the "
                                      "scheduler records the silent ones as CheckinMissed")]
    cases: Annotated[list[CaseRow], _meta("open cases that owe a check-in on the day and have neither "
                                          "checked in nor been marked missed, in case id order")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


# -- logistics ------------------------------------------------------------------------------------


class OpenRequestsQuery(Request):
    community: Community
    limit: Annotated[int, _meta("at most this many requests", ge=1, le=MAX_REQUESTS)] = 200


class AssignmentsQuery(Request):
    volunteer: Annotated[str, _meta("the volunteer's actor id (staff:zhang-wei)")]


class StockQuery(Request):
    community: Community


class WelfareQuery(Request):
    community: Community


class SupplyRequest(Row):
    request: str
    community: Community
    household: str
    compound: str
    building: str
    address: Annotated[str | None, _meta("null since HouseholdRegistered schema 2: the address stays in the registry")]
    kind: RequestKind
    items: list[ItemLine]
    note: str | None
    priority: Annotated[int, _meta("higher first")]
    priority_reasons: list[PriorityReason]
    status: Literal["open", "assigned"]
    volunteer: Annotated[str | None, _meta("who carries it, once assigned")]
    attempts: Annotated[int, _meta("deliveries tried", ge=0)]
    daily_on: Annotated[date | None, _meta("the day of a daily food request")]
    requested_at: datetime


class Shortfall(Row):
    item: str
    need: int
    missing: Annotated[int, _meta("what the store lacks once the requests above are met")]


class OpenRequest(SupplyRequest):
    missing: Annotated[list[Shortfall], _meta("empty when the store can meet it")]


class OpenRequestsReply(Reply):
    community: Community
    count: Count
    on_hand: Stock
    requests: Annotated[list[OpenRequest], _meta("highest priority first")]


class AssignmentsReply(Reply):
    volunteer: str
    count: Count
    assignments: Annotated[list[SupplyRequest], _meta("those in communities the caller reads")]


class StockReply(Reply):
    community: Community
    on_hand: Stock


class WelfareCheck(Row):
    check: str | None
    household: str
    compound: str
    building: str
    request: Annotated[str | None, _meta("the delivery that found no answer")]
    vulnerabilities: list[Vulnerability]
    raised_at: datetime | None


class WelfareReply(Reply):
    community: Community
    count: Count
    checks: Annotated[list[WelfareCheck], _meta("open checks, oldest first")]


class GroupOrdersQuery(Request):
    community: Community
    open: Annotated[bool | None, _meta("true: orders not yet all handed out; false: those done; "
                                       "absent: every order")] = None
    limit: Annotated[int, _meta("at most this many orders, newest first", ge=1, le=MAX_REQUESTS)] = 200


class GroupOrderRow(Row):
    order: str
    compound: str
    supplier: Annotated[str, _meta("the shop or company (a business, not a person)")]
    items: list[OrderLine]
    households: Annotated[int, _meta("households the order is for", ge=1)]
    status: Annotated[Literal["placed", "delivered", "handed_out"],
                      _meta("placed; delivered to the gate; handed out to every household ordered for")]
    gate: Annotated[str | None, _meta("where the supplier left it")]
    handed_out: Annotated[int, _meta("households served so far", ge=0)]
    buildings: Annotated[dict[str, int], _meta("building -> households served there")]
    placed_at: datetime
    delivered_at: datetime | None


class GroupOrdersReply(Reply):
    community: Community
    count: Count
    orders: Annotated[list[GroupOrderRow], _meta("newest first")]


class VolunteerHoursQuery(Request, rename={"from_": "from"}):
    community: Community
    on: Annotated[date | None, _meta("one day (default today); not with from/to")] = None
    from_: Annotated[date | None, _meta("first day of a range (inclusive, at most 93 days)")] = None
    to: Annotated[date | None, _meta("last day of a range (inclusive; default today)")] = None


class TeamHours(Row):
    team: Annotated[str | None, _meta("null: volunteers in no registered team (gate shifts of people "
                                      "logistics does not know)")]
    unit_kind: UnitKind | None
    hours: Annotated[float, _meta("every kind together", ge=0)]
    kinds: Annotated[dict[HoursKind, float], _meta("hours by kind (delivery, door_to_door, gate_shift, other)")]
    volunteers: Annotated[int, _meta("distinct volunteers with hours", ge=0)]


class VolunteerHoursReply(Reply, rename={"from_": "from"}):
    community: Community
    from_: Day
    to: Day
    time_zone: Annotated[str, _meta("the city's time zone the days are counted in")]
    hours: Annotated[float, _meta("every team together", ge=0)]
    teams: Annotated[list[TeamHours], _meta("by team, most hours first")]


class VulnerableQuery(Request):
    community: Community
    limit: Annotated[int, _meta("residents per page", ge=1, le=MAX_REQUESTS)] = 200
    after: Annotated[str, _meta("the next of the previous page")] = ""


class VulnerableResident(Row):
    resident: str
    display_name: Annotated[str, _meta("masked (王*伟)")]
    household: str
    compound: str
    building: str
    vulnerabilities: list[Vulnerability]
    last_contact: Annotated[Literal["delivery", "welfare_check", "visit"] | None,
                            _meta("how the household was last reached: a delivery left, a welfare check "
                                  "resolved, a door-to-door visit that found someone; null: never")]
    last_contact_at: datetime | None
    days_without_contact: Annotated[Count | None, _meta("whole days since (the city's calendar); null: never")]


class VulnerableReply(Reply):
    community: Community
    count: Count
    residents: Annotated[list[VulnerableResident], _meta("the longest without contact first (never "
                                                         "contacted first of all), then by resident id")]
    next: Annotated[str | None, _meta("the after of the following page; null on the last")]


# -- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One query: ``cordon.qry.<name>``, answered by ``service`` (``any``: every service's host)."""

    name: str
    service: str
    request: type[Request]
    reply: type[Reply]
    summary: str


QUERIES: dict[str, Query] = {q.name: q for q in (
    Query("community", "views", CommunityQuery, CommunityReply,
          "the committee's board on a day: every figure of CONTRACT.md"),
    Query("rollup", "views", RollupQuery, RollupReply,
          "the board's figures summed over a scope (city, district, street or community): the daily "
          "report sent upward"),
    Query("timeline", "views", TimelineQuery, TimelineReply,
          "every event naming a resident, in order, with its actor"),
    Query("audit", "audit", AuditQuery, AuditReply,
          "rows of the hash-chained audit log, by actor, resident, community, type and time"),
    Query("health", "any", HealthQuery, HealthReply,
          "every running service instance, its outbox depth and its consumers' lag"),
    Query("registry.identities", "registry", IdentitiesQuery, IdentitiesReply,
          "every identity ever granted (operators only)"),
    Query("registry.contact", "registry", ContactQuery, ContactReply,
          "names and phones of a resident or a household, to staff of its own community only; every "
          "read recorded first (PersonalDataViewed), or nothing is shown"),
    Query("registry.names", "registry", NamesQuery, NamesReply,
          "the masked names (王*伟) of residents and households' residents of a community, for boards "
          "and lists: nothing personal, no read recorded"),
    Query("registry.awaiting_verification", "registry", AwaitingVerificationQuery, AwaitingVerificationReply,
          "a committee's arrivals waiting for door-to-door verification, oldest first, with how long each "
          "has waited"),
    Query("registry.household", "registry", HouseholdQuery, HouseholdReply,
          "a household and its residents: masked names, vulnerabilities, moved out or not"),
    Query("registry.compound_households", "registry", CompoundHouseholdsQuery, CompoundHouseholdsReply,
          "a compound's households, a page at a time, with how many live in each"),
    Query("registry.tip_offs", "registry", TipOffsQuery, TipOffsReply,
          "a committee's tip-offs from neighbours, open first, with their follow-up"),
    Query("registry.pending_registrations", "registry", PendingRegistrationsQuery, PendingRegistrationsReply,
          "arrivals from the city's list with no resident here yet, waiting for the committee to complete "
          "their registration at the door (masked names only)"),
    Query("checkpoint.shifts", "checkpoint", ShiftsQuery, ShiftsReply,
          "volunteer person-times, people, hours and open shifts at the gates, per day"),
    Query("checkpoint.visitor_contact", "checkpoint", VisitorContactQuery, VisitorContactReply,
          "a visitor's name and phone, to staff of the visited community only and only within the "
          "tracing window (CORDON_VISITOR_TRACING_DAYS); every read recorded first (VisitorContactViewed)"),
    Query("checkpoint.parcels", "checkpoint", ParcelsQuery, ParcelsReply,
          "the parcels, takeaway and groceries at a community's gates' drop points, oldest first: the drop "
          "point's work list (which go to the door)"),
    Query("quarantine.cases", "quarantine", CasesQuery, CasesReply,
          "a committee's quarantine cases, a page at a time"),
    Query("quarantine.history", "quarantine", CaseHistoryQuery, CaseHistoryReply,
          "every case of a resident and every event of those cases"),
    Query("quarantine.screening_status", "quarantine", ScreeningStatusQuery, ScreeningStatusReply,
          "a screening round's counts and work lists: not sampled yet, results pending, staying in "
          "until the result, a page at a time"),
    Query("quarantine.due_for_release", "quarantine", DueForReleaseQuery, DueForReleaseReply,
          "a committee's cases whose quarantine or monitoring ends on or before a day, most overdue first"),
    Query("quarantine.checkins_due", "quarantine", CheckinsDueQuery, CheckinsDueReply,
          "a committee's cases with no check-in recorded yet on a day, before the evening sweep"),
    Query("logistics.requests", "logistics", OpenRequestsQuery, OpenRequestsReply,
          "a committee's open supply requests, highest priority first, with what the store misses"),
    Query("logistics.assignments", "logistics", AssignmentsQuery, AssignmentsReply,
          "the deliveries a volunteer carries now, by household and building"),
    Query("logistics.stock", "logistics", StockQuery, StockReply, "a committee's stock on hand by item"),
    Query("logistics.welfare", "logistics", WelfareQuery, WelfareReply,
          "a committee's open welfare checks, oldest first"),
    Query("logistics.group_orders", "logistics", GroupOrdersQuery, GroupOrdersReply,
          "a committee's group orders from suppliers: placed, at the gate, handed out per building"),
    Query("logistics.volunteer_hours", "logistics", VolunteerHoursQuery, VolunteerHoursReply,
          "volunteers' hours per team and kind (deliveries, door-to-door visits, gate shifts) over days"),
    Query("logistics.vulnerable", "logistics", VulnerableQuery, VulnerableReply,
          "a committee's vulnerable residents with their last contact, the longest without contact first"),
)}


def decode(name: str, payload: bytes) -> Any:
    """Decode ``payload`` strictly as the request of query ``name``: every failure is
    :class:`~shared.errors.Invalid` naming the field. An empty payload is ``{}`` for a query that
    takes no fields, and ``invalid`` for the others."""
    query = QUERIES[name]
    if not payload.strip() and not query.request.__struct_fields__:
        payload = b"{}"
    return wire.decode(query.service, {name: query.request}, name, payload, _choices(query.request))


@functools.cache
def _choices(cls: type) -> dict[str, tuple]:
    """Field name -> the values of its Literal type: the hint of an ``invalid`` enum value."""
    info = msgspec.inspect.type_info(cls)
    return {f.encode_name: f.type.values for f in info.fields if isinstance(f.type, msgspec.inspect.LiteralType)}

