"""The quarantine rules as stories over simulated days: given events -> when a command -> then events
or an error. Pure: a dict of streams stands in for the record, as the handlers load it."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.quarantine.commands import (
    LiftSeal,
    OpenCase,
    RecordCheckin,
    RecordMissedCheckins,
    RecordResult,
    RecordSample,
    ReleaseCase,
    ScheduleScreening,
    Seal,
    SlotIn,
    TransferCase,
)
from services.quarantine.config import Config
from services.quarantine.decide import Compound, Facts, Resident, decide, missed_checkin
from services.quarantine.domain import (
    Case,
    Day,
    Sample,
    Seals,
    case_stream,
    day_stream,
    evolve,
    replay,
    sample_stream,
    screening_stream,
    seal_stream,
)
from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    CheckinMissed,
    CheckinRecorded,
    CheckinRecordedV1,
    ResultRecorded,
    SampleTaken,
    SampleTakenV1,
    ScreeningScheduled,
    SealLifted,
    SymptomsReported,
    SymptomsReportedV1,
)
from shared.errors import CommandError, Rejected

CITY = ZoneInfo("Asia/Shanghai")
DAY1 = date(2026, 11, 2)
COMMUNITY = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-na"
CONFIG = Config()
WANG = Resident(resident="r-wang", community=COMMUNITY, household="h-201", compound="sunny-garden",
                building="b2")
LI = Resident(resident="r-li", community=COMMUNITY, household="h-305", compound="sunny-garden", building="b3")
GARDEN = Compound(community=COMMUNITY, compound="sunny-garden", buildings=("b1", "b2", "b3"))


def given(config: Config = CONFIG, **facts) -> Facts:
    """The facts a handler would load, and the city's settings."""
    return Facts(config=config, **facts)


def day(n: int) -> date:
    """Day n of the story (day 1 is 2026-11-02)."""
    return DAY1 + timedelta(days=n - 1)


def at(n: int, clock: str = "09:00") -> datetime:
    return datetime.combine(day(n), time.fromisoformat(clock), tzinfo=CITY)


_ids = iter(range(10**9))


def common(when: datetime) -> dict:
    return {"command_id": f"c-{next(_ids)}", "actor": STAFF, "occurred_at": when}


class World:
    """The record as streams of events, and the facts each command loads, as the handlers do."""

    def __init__(self, config: Config = CONFIG, residents=(WANG, LI)):
        self.config = config
        self.residents = {r.resident: r for r in residents}
        self.streams: dict[str, list] = {}

    def state(self, stream: str):
        return replay(self.streams.get(stream, []))

    def open_case_of(self, resident: str) -> Case | None:
        for stream in self.streams:
            case = self.state(stream) if stream.startswith("case:") else None
            if case is not None and case.resident == resident and not case.closed:
                return case
        return None

    def facts(self, cmd) -> Facts:
        match cmd:
            case OpenCase():
                return given(self.config, case=self.state(case_stream(cmd.case)),
                             open_case=self.open_case_of(cmd.resident), resident=self.residents.get(cmd.resident))
            case RecordCheckin():
                return given(self.config, case=self.state(case_stream(cmd.case)),
                             day=self.state(day_stream(cmd.case, cmd.on)))
            case TransferCase() | ReleaseCase():
                return given(self.config, case=self.state(case_stream(cmd.case)))
        raise AssertionError(cmd)

    def run(self, cmd) -> list:
        events = decide(self.facts(cmd), cmd)
        for event in events:
            stream = day_stream(event.case, event.on) if isinstance(event, (CheckinRecorded, SymptomsReported)) \
                else case_stream(event.case)
            self.streams.setdefault(stream, []).append(event)
        return events

    def open(self, when: datetime, resident: str = "r-wang", kind: str = "home", starts_on: date | None = None,
             case: str = "case-1", reason: str = "arrival") -> CaseOpened:
        [event] = self.run(OpenCase(**common(when), community=COMMUNITY, resident=resident, kind=kind,
                                    reason=reason, starts_on=starts_on or when.date(), case=case))
        return event

    def checkin(self, when: datetime, on: date | None = None, case: str = "case-1", temperature: float = 36.6,
                symptoms: tuple = ()) -> list:
        return self.run(RecordCheckin(**common(when), case=case, on=on or when.date(), temperature_c=temperature,
                                      symptoms=list(symptoms)))

    def release(self, when: datetime, on: date | None = None, case: str = "case-1"):
        [event] = self.run(ReleaseCase(**common(when), case=case, on=on or when.date()))
        return event

    def transfer(self, when: datetime, to: str, case: str = "case-1") -> CaseTransferred:
        [event] = self.run(TransferCase(**common(when), case=case, to=to))
        return event

    def sweep(self, on: date, when: datetime) -> dict[str, str]:
        """What the scheduler does: CheckinMissed for each case that owes ``on``; case -> outcome."""
        cases = sorted(s[len("case:"):] for s in self.streams if s.startswith("case:"))
        cmd = RecordMissedCheckins(**common(when), on=on, cases=cases)
        outcome = {}
        for case_id in cases:
            try:
                event = missed_checkin(self.state(case_stream(case_id)), self.state(day_stream(case_id, on)),
                                       case_id, cmd, self.config)
            except Rejected as err:
                outcome[case_id] = err.reason
                continue
            self.streams.setdefault(day_stream(case_id, on), []).append(event)
            outcome[case_id] = "missed"
        return outcome


def refused(fn, *args, **kwargs) -> CommandError:
    with pytest.raises(CommandError) as info:
        fn(*args, **kwargs)
    return info.value


# -- the life of a case over simulated days -----------------------------------------------------


def test_a_home_case_lives_21_days_checkins_a_missed_day_release_monitoring_and_close():
    world = World()
    opened = world.open(at(1, "10:00"))
    assert (opened.kind, opened.starts_on, opened.ends_on) == ("home", day(1), day(14))
    assert (opened.household, opened.compound, opened.building) == ("h-201", "sunny-garden", "b2")
    assert opened.checkins_due_from == day(1) and opened.opened_by == STAFF
    outcomes = {}
    for n in range(1, 22):
        if n != 5:
            world.checkin(at(n, "08:30"))
        if n == 14:
            released = world.release(at(14, "19:00"))
            assert isinstance(released, CaseReleased)
            assert (released.on, released.monitoring_until) == (day(14), day(21))
        if n == 20:
            assert refused(world.release, at(20, "10:00")).reason == "monitoring_not_over"
        outcomes[n] = world.sweep(day(n), at(n, "18:00"))["case-1"]
    assert outcomes[5] == "missed"
    assert {o for n, o in outcomes.items() if n != 5} == {"checked_in"}
    closed = world.release(at(22, "00:05"), on=day(21))
    assert isinstance(closed, CaseClosed) and closed.on == day(21)
    assert world.sweep(day(22), at(22, "18:00"))["case-1"] == "case_closed"
    err = refused(world.checkin, at(22, "09:00"))
    assert (err.code, err.reason) == ("rejected", "case_closed")
    missed = [e for s, es in world.streams.items() for e in es if isinstance(e, CheckinMissed)]
    assert [(m.case, m.on, m.household) for m in missed] == [("case-1", day(5), "h-201")]


def test_a_missed_day_is_recorded_once_and_not_before_the_check_in_hour():
    world = World()
    world.open(at(1))
    assert world.sweep(day(1), at(1, "17:59")) == {"case-1": "too_early"}
    assert world.sweep(day(1), at(1, "18:00")) == {"case-1": "missed"}
    assert world.sweep(day(1), at(1, "23:00")) == {"case-1": "already_missed"}
    # A late check-in is still recorded, after the missed mark.
    assert [type(e) for e in world.checkin(at(1, "23:30"))] == [CheckinRecorded]
    assert replay(world.streams[day_stream("case-1", day(1))]) == Day(checkins=1, missed=True)


def test_a_case_opened_after_the_check_in_hour_owes_its_first_check_in_the_next_day():
    world = World()
    assert world.open(at(1, "20:00")).checkins_due_from == day(2)
    assert world.sweep(day(1), at(1, "23:00")) == {"case-1": "not_due"}
    assert world.sweep(day(2), at(2, "18:30")) == {"case-1": "missed"}


def test_a_case_starting_in_the_past_owes_check_ins_only_from_the_day_it_was_opened():
    opened = World().open(at(3), starts_on=day(1))
    assert (opened.starts_on, opened.ends_on, opened.checkins_due_from) == (day(1), day(14), day(3))


def test_no_check_in_is_owed_in_hospital_and_again_from_the_day_after_discharge():
    world = World()
    world.open(at(1))
    world.transfer(at(3), "hospital")
    assert world.sweep(day(3), at(3, "19:00")) == {"case-1": "in_hospital"}
    assert refused(world.checkin, at(3, "10:00")).reason == "in_hospital"
    released = world.release(at(6, "11:00"))
    assert released.monitoring_until == day(13)
    assert world.sweep(day(6), at(6, "19:00")) == {"case-1": "not_due"}
    assert world.sweep(day(7), at(7, "19:00")) == {"case-1": "missed"}
    assert world.sweep(day(14), at(14, "19:00")) == {"case-1": "not_due"}  # monitoring over


# -- release ----------------------------------------------------------------------------------


def test_a_release_from_hospital_is_never_dated_before_the_admission():
    """Taken to hospital on day 2, a release dated day 1 would start monitoring on a day the resident
    was still at home and make the hospital day fall due for a check-in: refused, named."""
    world = World()
    world.open(at(1))
    world.transfer(at(2), "hospital")
    refusal = refused(world.release, at(2, "15:00"), on=day(1))
    assert refusal.reason == "before_admission" and str(day(2)) in str(refusal)
    assert world.release(at(2, "15:00"), on=day(2)).monitoring_until == day(9)


def test_release_before_the_start_in_the_future_or_before_the_planned_end_is_refused():
    world = World()
    world.open(at(3), starts_on=day(3))
    assert refused(world.release, at(3), on=day(2)).reason == "before_start"
    assert refused(world.release, at(3), on=day(4)).reason == "future_day"
    err = refused(world.release, at(10))
    assert (err.reason, "2026-11-17" in err.message) == ("quarantine_not_over", True)
    assert world.release(at(16)).on == day(16)


def test_release_of_an_unknown_or_closed_case():
    world = World()
    err = refused(world.release, at(1), case="nope")
    assert (err.code, err.field) == ("not_found", "case")
    world.open(at(1), kind="monitoring", reason="fever")
    world.release(at(7))
    assert refused(world.release, at(8)).reason == "case_closed"


def test_a_monitoring_case_lasts_the_monitoring_days_and_closes_on_its_last_day():
    world = World()
    opened = world.open(at(1), kind="monitoring", reason="fever")
    assert opened.ends_on == day(7)
    assert refused(world.release, at(6)).reason == "monitoring_not_over"
    closed = world.release(at(8), on=day(7))
    assert isinstance(closed, CaseClosed) and world.state(case_stream("case-1")).closed


# -- policy durations ---------------------------------------------------------------------------


@pytest.mark.parametrize("quarantine, monitoring", [(14, 7), (7, 3), (21, 14), (1, 1)])
def test_durations_come_from_the_policy(quarantine, monitoring):
    world = World(Config(quarantine_days=quarantine, monitoring_days=monitoring))
    opened = world.open(at(1))
    assert opened.ends_on == day(quarantine)
    if quarantine > 1:
        assert refused(world.release, at(quarantine), on=day(quarantine - 1)).reason == "quarantine_not_over"
    released = world.release(at(quarantine + 1), on=day(quarantine))
    assert released.monitoring_until == day(quarantine + monitoring)
    monitoring_case = World(Config(quarantine_days=quarantine, monitoring_days=monitoring)).open(
        at(1), kind="monitoring", reason="fever")
    assert monitoring_case.ends_on == day(monitoring)


def test_a_city_with_seven_days_releases_on_day_seven_what_a_fourteen_day_city_refuses():
    short, usual = World(Config(quarantine_days=7)), World()
    short.open(at(1))
    usual.open(at(1))
    assert isinstance(short.release(at(7)), CaseReleased)
    assert refused(usual.release, at(7)).reason == "quarantine_not_over"


def test_the_check_in_hour_and_the_fever_threshold_come_from_the_policy():
    world = World(Config(checkin_hour=12, fever_c=37.0))
    world.open(at(1, "08:00"))
    assert world.sweep(day(1), at(1, "12:00")) == {"case-1": "missed"}
    assert [type(e) for e in world.checkin(at(2), temperature=37.1)] == [CheckinRecorded, SymptomsReported]
    usual = World()
    usual.open(at(1, "08:00"))
    assert usual.sweep(day(1), at(1, "12:00")) == {"case-1": "too_early"}
    assert [type(e) for e in usual.checkin(at(2), temperature=37.1)] == [CheckinRecorded]


# -- one open case per resident -------------------------------------------------------------------


def test_a_second_open_case_for_the_same_resident_is_rejected_until_the_first_closes():
    world = World()
    world.open(at(1))
    err = refused(world.open, at(2), case="case-2", kind="monitoring", reason="fever")
    assert (err.code, err.reason, "case-1" in err.message) == ("rejected", "case_open", True)
    assert world.open(at(2), resident="r-li", case="case-2").resident == "r-li"
    world.release(at(14))
    assert refused(world.open, at(15), case="case-3").reason == "case_open"  # monitoring is open
    world.release(at(22), on=day(21))
    assert world.open(at(22), case="case-3").case == "case-3"


def test_a_case_id_is_taken_once():
    world = World()
    world.open(at(1))
    err = refused(world.open, at(1), resident="r-li")
    assert (err.code, err.field) == ("conflict", "case")


def test_open_case_for_an_unknown_resident_or_in_another_community_is_not_found():
    world = World()
    err = refused(world.open, at(1), resident="r-nobody")
    assert (err.code, err.field) == ("not_found", "resident")
    world.residents["r-far"] = Resident(resident="r-far", community="jingan.wanli.a", household="h",
                                        compound="c", building="b")
    assert refused(world.open, at(1), resident="r-far").code == "not_found"


def test_a_resident_who_moved_out_gets_centralized_quarantine_not_home():
    world = World(residents=[Resident(resident="r-gone", community=COMMUNITY, household="h-1",
                                      compound="sunny-garden", building="b1", moved_out=True)])
    assert refused(world.open, at(1), resident="r-gone").reason == "no_household_here"
    assert world.open(at(1), resident="r-gone", kind="centralized").kind == "centralized"


def test_a_case_cannot_start_in_the_future_or_be_over_already():
    world = World()
    assert refused(world.open, at(1), starts_on=day(2)).reason == "future_day"
    assert refused(world.open, at(15), starts_on=day(1)).reason == "already_over"
    assert world.open(at(14), starts_on=day(1)).ends_on == day(14)


# -- check-ins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature, symptoms, why", [
    (36.6, (), None), (37.2, (), None), (37.3, (), (True, False)), (39.0, (), (True, False)),
    (36.5, ("cough",), (False, True)), (38.0, ("cough",), (True, True)),
])
def test_an_abnormal_check_in_also_reports_symptoms(temperature, symptoms, why):
    world = World()
    world.open(at(1))
    events = world.checkin(at(1), temperature=temperature, symptoms=symptoms)
    # the check-in says that the resident checked in, not what was read (health data stays home)
    assert events[0] == CheckinRecorded(community=COMMUNITY, case="case-1", resident="r-wang", on=day(1),
                                        recorded_at=at(1), recorded_by=STAFF)
    # and an abnormal one is reported with why: fever, symptoms
    assert [(e.fever, e.symptomatic) for e in events[1:]] == ([why] if why else [])
    assert all(isinstance(e, SymptomsReported) for e in events[1:])


@pytest.mark.parametrize("temperature, symptoms, why", [
    (38.2, ["cough"], (True, True)), (37.5, [], (True, False)), (36.5, ["cough"], (False, True)),
    # reported under a lower threshold than the default: without a symptom, it was the fever
    (37.0, [], (True, False)),
])
def test_a_check_in_of_schema_1_replays_and_reads_as_schema_2(temperature, symptoms, why):
    # Given the check-in of a day recorded before the readings left the bus
    fields = dict(community=COMMUNITY, case="case-1", resident="r-wang", on=day(1), temperature_c=temperature,
                  symptoms=symptoms)
    old = [CheckinRecordedV1(**fields, recorded_at=at(1), recorded_by=STAFF),
           SymptomsReportedV1(**fields, reported_at=at(1), reported_by=STAFF)]
    # then the day counts it as a check-in, as schema 2 would
    assert replay(old) == replay([e.upcast() for e in old]) == Day(checkins=1)
    # and it reads as schema 2: checked in; abnormal, and why
    checkin, symptoms_reported = (e.upcast() for e in old)
    assert checkin == CheckinRecorded(community=COMMUNITY, case="case-1", resident="r-wang", on=day(1),
                                      recorded_at=at(1), recorded_by=STAFF)
    assert (symptoms_reported.fever, symptoms_reported.symptomatic) == why


def test_a_check_in_before_the_start_in_the_future_or_for_an_unknown_case_is_refused():
    world = World()
    world.open(at(2), starts_on=day(2))
    assert refused(world.checkin, at(2), on=day(1)).reason == "before_start"
    assert refused(world.checkin, at(2), on=day(3)).reason == "future_day"
    assert refused(world.checkin, at(2), case="nope").code == "not_found"
    assert len(world.checkin(at(2))) == 1 and len(world.checkin(at(2, "21:00"))) == 1  # two readings
    assert world.state(day_stream("case-1", day(2))) == Day(checkins=2)


def test_the_city_day_is_local_time_not_utc():
    world = World()
    late_utc = datetime(2026, 11, 2, 16, 30, tzinfo=ZoneInfo("UTC"))  # 00:30 on Nov 3 in Shanghai
    opened = world.open(late_utc, starts_on=date(2026, 11, 3))
    assert opened.starts_on == date(2026, 11, 3) and opened.checkins_due_from == date(2026, 11, 3)


# -- transfers ----------------------------------------------------------------------------------


def test_transfers_home_to_centralized_keeps_the_days_from_monitoring_starts_new_ones():
    world = World()
    world.open(at(1))
    moved = world.transfer(at(4), "centralized")
    assert (moved.to, moved.on, moved.ends_on, moved.household) == ("centralized", day(4), None, "h-201")
    assert world.state(case_stream("case-1")).ends_on == day(14)
    assert refused(world.transfer, at(5), "centralized").reason == "already_there"
    fever = World()
    fever.open(at(1), kind="monitoring", reason="fever")
    moved = fever.transfer(at(3), "centralized")
    assert moved.ends_on == day(16)
    case = fever.state(case_stream("case-1"))
    assert (case.stage, case.ends_on, case.kind) == ("centralized", day(16), "monitoring")


def test_hospital_and_back_to_centralized_quarantine():
    world = World()
    world.open(at(1))
    world.transfer(at(2, "10:00"), "hospital")
    assert refused(world.transfer, at(2), "hospital").reason == "already_there"
    back = world.transfer(at(9, "10:00"), "centralized")
    assert back.ends_on == day(22)
    case = world.state(case_stream("case-1"))
    assert (case.stage, case.due_from) == ("centralized", day(10))
    world.release(at(22))
    world.release(at(30), on=day(29))
    assert refused(world.transfer, at(30), "hospital").reason == "case_closed"


# -- seals --------------------------------------------------------------------------------------


def seal_cmd(cls=Seal, building: str | None = "b2", compound: str = "sunny-garden"):
    return cls(**common(at(1)), community=COMMUNITY, compound=compound, building=building)


def test_sealing_a_building_then_the_whole_compound_and_lifting():
    seals = None
    sealed = decide(given(compound=GARDEN, seals=seals), seal_cmd())
    assert sealed == [AreaSealed(community=COMMUNITY, compound="sunny-garden", building="b2",
                                 sealed_at=at(1), sealed_by=STAFF)]
    seals = replay(sealed)
    assert refused(decide, given(compound=GARDEN, seals=seals), seal_cmd()).reason == "already_sealed"
    seals = replay(decide(given(compound=GARDEN, seals=seals), seal_cmd(building=None)), seals)
    assert seals == Seals(whole=True, buildings=frozenset({"b2"}))
    assert refused(decide, given(compound=GARDEN, seals=seals), seal_cmd(building="b1")).reason \
        == "already_sealed"
    lifted = decide(given(compound=GARDEN, seals=seals), seal_cmd(LiftSeal, building=None))
    assert isinstance(lifted[0], SealLifted)
    assert replay(lifted, seals) == Seals(whole=False, buildings=frozenset({"b2"}))
    assert refused(decide, given(compound=GARDEN, seals=replay(lifted, seals)),
                   seal_cmd(LiftSeal, building=None)).reason == "not_sealed"


def test_an_unknown_compound_or_building_cannot_be_sealed():
    err = refused(decide, given(compound=None), seal_cmd())
    assert (err.code, err.field) == ("not_found", "compound")
    err = refused(decide, given(compound=GARDEN), seal_cmd(building="b9"))
    assert (err.code, err.field, "b1, b2, b3" in err.message) == ("not_found", "building", True)
    assert refused(decide, given(compound=GARDEN), seal_cmd(LiftSeal)).reason == "not_sealed"


# -- screening rounds ---------------------------------------------------------------------------


def schedule(on: date, when: datetime | None = None):
    return ScheduleScreening(**common(when or at(1)), community=COMMUNITY, compound="sunny-garden", on=on,
                             screening="round-1", slots=[SlotIn(label="students", from_="07:00", to="08:00"),
                                                         SlotIn(label="everyone", from_="08:00", to="11:30")])


def a_round(on: date = None):
    [event] = decide(given(compound=GARDEN), schedule(on or day(2)))
    return event


def test_a_screening_round_with_a_students_slot():
    event = a_round()
    assert isinstance(event, ScreeningScheduled) and event.on == day(2)
    assert [(s.label, s.from_, s.to) for s in event.slots] == [("students", time(7), time(8)),
                                                               ("everyone", time(8), time(11, 30))]
    assert refused(decide, given(compound=GARDEN), schedule(day(1), at(2))).reason == "past_day"
    assert refused(decide, given(compound=None), schedule(day(2))).code == "not_found"
    assert refused(decide, given(compound=GARDEN, screening=replay([event])), schedule(day(2))).code \
        == "conflict"


def sample(resident="r-wang", slot="students", when=None):
    return RecordSample(**common(when or at(2)), screening="round-1", resident=resident, code="A-0017", slot=slot)


def test_a_sample_of_schema_1_replays_and_reads_as_schema_2():
    # Given a sample recorded before the printed codes left the bus, and its result
    old = SampleTakenV1(community=COMMUNITY, screening="round-1", resident="r-wang", code="A-0017",
                        compound="sunny-garden", slot="students", taken_at=at(2), taken_by=STAFF)
    # then it reads as schema 2, without the code, and builds the same sample
    assert old.upcast() == SampleTaken(community=COMMUNITY, screening="round-1", resident="r-wang",
                                       compound="sunny-garden", slot="students", taken_at=at(2), taken_by=STAFF)
    assert replay([old]) == replay([old.upcast()])


def test_samples_are_taken_per_resident_of_the_compound_on_the_day():
    screening = replay([a_round()])
    [taken] = decide(given(screening=screening, resident=WANG), sample())
    # (the printed code stays with the quarantine: not in the event)
    assert taken == SampleTaken(community=COMMUNITY, screening="round-1", resident="r-wang",
                                compound="sunny-garden", slot="students", taken_at=at(2), taken_by=STAFF)
    assert refused(decide, given(screening=screening, resident=WANG, sample=replay([taken])), sample()).reason \
        == "already_sampled"
    far = Resident(resident="r-far", community=COMMUNITY, household="h", compound="other", building="b1")
    assert refused(decide, given(screening=screening, resident=far), sample("r-far")).reason \
        == "other_compound"
    assert refused(decide, given(screening=screening, resident=WANG), sample(slot="nurses")).field == "slot"
    assert refused(decide, given(screening=screening, resident=None), sample()).field == "resident"
    assert refused(decide, given(screening=None, resident=WANG), sample()).field == "screening"
    assert refused(decide, given(screening=screening, resident=WANG), sample(when=at(1))).reason \
        == "before_screening_day"


def result(value: str, resident="r-wang"):
    return RecordResult(**common(at(3)), screening="round-1", resident=resident, result=value, case="case-p")


def test_a_negative_result_is_recorded_and_a_positive_one_opens_a_centralized_case():
    screening = replay([a_round()])
    sampled = Sample(screening="round-1", resident="r-wang")
    [negative] = decide(given(screening=screening, sample=sampled), result("negative"))
    assert (negative.result, negative.case) == ("negative", None)
    recorded, opened = decide(given(screening=screening, sample=sampled, resident=WANG), result("positive"))
    assert isinstance(recorded, ResultRecorded) and recorded.case == "case-p"
    assert isinstance(opened, CaseOpened)
    assert (opened.kind, opened.reason, opened.starts_on, opened.ends_on, opened.household) == (
        "centralized", "positive_test", day(3), day(16), "h-201")


def test_a_positive_result_for_a_resident_with_an_open_case_opens_no_second_case():
    world = World()
    world.open(at(1))
    facts = given(screening=replay([a_round()]), sample=Sample(screening="round-1", resident="r-wang"),
                  resident=WANG, open_case=world.state(case_stream("case-1")))
    [recorded] = decide(facts, result("positive"))
    assert (recorded.result, recorded.case) == ("positive", None)


def test_a_result_needs_a_sample_and_is_recorded_once():
    screening = replay([a_round()])
    assert refused(decide, given(screening=screening), result("negative")).reason == "not_sampled"
    done = Sample(screening="round-1", resident="r-wang", result="negative")
    assert refused(decide, given(screening=screening, sample=done), result("positive")).reason \
        == "result_already_recorded"


# -- evolve -------------------------------------------------------------------------------------


def test_evolve_refuses_an_event_on_the_wrong_aggregate():
    with pytest.raises(TypeError):
        evolve(None, CaseClosed(community=COMMUNITY, case="c", resident="r", on=day(1), closed_at=at(1),
                                closed_by=STAFF))
    with pytest.raises(TypeError):
        evolve(Day(), SealLifted(community=COMMUNITY, compound="c", lifted_at=at(1), lifted_by=STAFF))


def test_stream_ids_keep_one_day_per_stream():
    assert day_stream("case-1", day(1)) == "checkin:case-1:2026-11-02"
    assert seal_stream(COMMUNITY, "sunny-garden") == f"seal:{COMMUNITY}:sunny-garden"
    assert sample_stream("round-1", "r-wang") == "sample:round-1:r-wang"
    assert screening_stream("round-1") == "screening:round-1"


def test_a_positive_result_sends_someone_who_moved_out_to_centralized_quarantine_even_if_home_is_usual():
    gone = Resident(resident="r-wang", community=COMMUNITY, household="h-201", compound="sunny-garden",
                    building="b2", moved_out=True)
    facts = given(screening=replay([a_round()]), sample=Sample(screening="round-1", resident="r-wang"))
    home_city = Config(positive_kind="home")
    _, opened = decide(given(home_city, screening=facts.screening, sample=facts.sample, resident=gone),
                       result("positive"))
    assert opened.kind == "centralized"
    _, opened = decide(given(home_city, screening=facts.screening, sample=facts.sample, resident=WANG),
                       result("positive"))
    assert opened.kind == "home"
