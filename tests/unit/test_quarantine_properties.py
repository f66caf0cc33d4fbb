"""Quarantine, property by property: given ANY sequence of cases opened, check-ins recorded or
missed, transfers, releases, seals and lifts, screening rounds, samples and results, on a few
residents, cases and compounds that keep colliding, at times that move forward with occasional jumps
of days (and a command now and then recorded late), under a short policy (3 days of quarantine, 2 of
monitoring) so that cases run their whole course,

then
- a resident has at most one open case, and a positive result leaves them with one;
- a case's check-ins (and missed check-ins) never precede its start, never lie in the future, and
  none is taken while the case is in hospital; a day is marked missed at most once, and never after
  a check-in that day;
- a closed case accepts nothing more: no transfer, release, check-in or missed check-in;
- a quarantine is released no earlier than its planned end (only a patient leaving hospital may be
  released earlier), and monitoring closes no earlier than its end;
- an area is sealed only when it is not sealed already (a building not inside a sealed compound),
  and a seal is lifted only where there is one;
- a resident is sampled once per round, on or after its day, only in their own compound, and has
  one result;
- every stream begins with its one creating event;
- replaying every stream gives exactly the state the decisions were made against.

The commands go through the service's path: ``validate`` (as the runtime does), facts built as
``handlers.py`` builds them (the resident's open case as ``quarantine.cases`` tells it, the
directory's residents and compounds), ``decide`` (``missed_checkin`` per case for the scheduler's
sweep), the events appended and folded with ``evolve``. A refusal (any ``CommandError``) writes
nothing.

Last, given a case taken to hospital and released from it, the release is never dated before the
admission (it once was: a release on the day before the admission was accepted).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

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
    validate,
)
from services.quarantine.config import Config
from services.quarantine.decide import Compound, Facts, Resident, check_deadline_passed, decide, missed_checkin
from services.quarantine.domain import (
    Case,
    Day,
    Sample,
    Seals,
    case_stream,
    day_stream,
    evolve,
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
    ResultRecorded,
    SampleTaken,
    ScreeningScheduled,
    SealLifted,
    SymptomsReported,
)
from shared.errors import CommandError, Invalid
from tests.support.record import MACHINE, QUICK_PHASES, Record, moments, mostly

CST = timezone(timedelta(hours=8))
START = datetime(2022, 4, 1, 9, 0, tzinfo=CST)
NANGONG = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-na"
#: A short policy, so that quarantines end, monitoring closes and releases come within a run.
CONFIG = Config(quarantine_days=3, monitoring_days=2)
#: The directory (registry facts): r-4 moved out; r-9 is not registered.
RESIDENTS = {
    "r-1": Resident(resident="r-1", community=NANGONG, household="h-1", compound="c-1", building="b1"),
    "r-2": Resident(resident="r-2", community=NANGONG, household="h-1", compound="c-1", building="b1"),
    "r-3": Resident(resident="r-3", community=NANGONG, household="h-2", compound="c-1", building="b2"),
    "r-4": Resident(resident="r-4", community=NANGONG, household="h-3", compound="c-2", building="b1",
                    moved_out=True),
}
COMPOUNDS = {"c-1": Compound(community=NANGONG, compound="c-1", buildings=("b1", "b2")),
             "c-2": Compound(community=NANGONG, compound="c-2", buildings=("b1",))}
CASES = ["k-1", "k-2", "k-3", "k-4", "k-5"]
SCREENINGS = ["s-1", "s-2"]
CREATING = (CaseOpened, ScreeningScheduled, SampleTaken)

residents = mostly(list(RESIDENTS), ["r-9"], one_in=8)
#: Days before the command's own day (negative: after it).
days_ago = mostly([0, 0, 1, 2, 3], [-1, 5, 30], one_in=8)
picks = st.integers(0, 40)


class Quarantine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.record = Record(evolve)
        self.now = START
        self.n = 0
        self.cases: list[str] = []
        self.samples: list[tuple[str, str]] = []
        self.screenings: list[str] = []

    # -- the service's path ----------------------------------------------------------------------

    def common(self, moment) -> dict:
        advance, late = moment
        self.now += advance
        self.n += 1
        return {"command_id": f"c-{self.n}", "actor": STAFF, "occurred_at": self.now - late}

    def state(self, stream: str):
        return self.record.state(stream)

    def open_case_of(self, resident: str) -> Case | None:
        """As ``handlers._open_case_of``: the resident's case whose row says open."""
        for case_id in self.cases:
            case = self.state(case_stream(case_id))
            if case.resident == resident and not case.closed:
                return case
        return None

    def decide(self, cmd, facts):
        """validate, load the facts (``facts(cmd) -> Facts``), decide; None if refused."""
        try:
            cmd = validate(cmd)
            return cmd, decide(facts(cmd), cmd)
        except CommandError:
            return cmd, None

    def append(self, stream: str, events: list, cmd) -> None:
        before = self.state(stream)
        for i, event in enumerate(events):
            self.check_event(stream, before, event, first=i == 0 and self.record.version(stream) == 0)
        self.record.append(stream, events, at=cmd.occurred_at, actor=cmd.actor)
        self.record.check_replay([stream])
        for event in events:
            match event:
                case CaseOpened():
                    self.cases.append(event.case)
                case SampleTaken():
                    self.samples.append((event.screening, event.resident))

    def case_of_day(self, stream: str) -> Case:
        case_id = stream.split(":")[1]
        return self.state(case_stream(case_id))

    def check_event(self, stream, before, event, *, first: bool) -> None:
        """What each event may only do to the state it is applied to."""
        if isinstance(event, CREATING):
            assert first, f"{type(event).__name__} in {stream}, which exists already: {before}"
        match event:
            case CaseTransferred() | CaseReleased() | CaseClosed():
                assert isinstance(before, Case) and not before.closed, (
                    f"{type(event).__name__} on case {event.case}, closed on {before.closed_on}")
            case CheckinRecorded() | SymptomsReported() | CheckinMissed():
                case = self.case_of_day(stream)
                assert not case.closed, f"{type(event).__name__} on case {case.case}, closed on {case.closed_on}"
                assert case.stage != "hospital", f"{type(event).__name__} while case {case.case} is in hospital"
                assert event.on >= case.starts_on, (
                    f"{type(event).__name__} of case {case.case} on {event.on}, before its start {case.starts_on}")
        match event:
            case CaseReleased():
                if before.in_quarantine:
                    assert event.on >= before.ends_on, (
                        f"case {event.case} released from {before.stage} on {event.on}, before its end "
                        f"{before.ends_on}")
                assert before.stage != "monitoring", f"case {event.case} released twice"
            case CaseClosed():
                assert before.stage == "monitoring" and event.on >= before.ends_on, (
                    f"case {event.case} closed on {event.on} in {before.stage} ending {before.ends_on}")
            case CheckinRecorded():
                assert event.on <= CONFIG.day(event.recorded_at), f"a check-in for {event.on}, in the future"
            case CheckinMissed():
                case = self.case_of_day(stream)
                assert event.on >= case.due_from, f"case {case.case} missed {event.on}, due from {case.due_from}"
                assert before is None or (not before.missed and not before.checkins), (
                    f"case {case.case} marked missed on {event.on} after {before}")
                assert event.missed_at >= CONFIG.deadline(event.on)
            case AreaSealed():
                seals = before or Seals()
                assert not seals.whole and (event.building is None or event.building not in seals.buildings), (
                    f"{event.compound}/{event.building} sealed again: {seals}")
            case SealLifted():
                assert isinstance(before, Seals) and before.covers(event.building), (
                    f"a seal lifted from {event.compound}/{event.building} that has none: {before}")
            case SampleTaken():
                r, screening = RESIDENTS.get(event.resident), self.state(screening_stream(event.screening))
                assert r is not None and (r.community, r.compound) == (screening.community, screening.compound)
                assert CONFIG.day(event.taken_at) >= screening.on, "sampled before the round's day"
            case ResultRecorded():
                assert isinstance(before, Sample) and before.result is None, f"a second result: {before}"

    # -- the commands ----------------------------------------------------------------------------

    @initialize(moment=moments, kinds=st.tuples(*[st.sampled_from(["home", "centralized", "monitoring"])] * 2))
    def two_cases_open_in_the_morning(self, moment, kinds):
        """r-1's case k-1 and r-3's case k-2, starting today, and a screening round of c-1 today where
        r-2 is sampled (the rules below start where cases and rounds run)."""
        self.open_case(moment, "k-1", "r-1", kinds[0], 0, None)
        self.open_case((timedelta(0), timedelta(0)), "k-2", "r-3", kinds[1], 0, None)
        self.schedule_screening((timedelta(0), timedelta(0)), "s-0", "c-1", 0)
        self.record_sample((timedelta(0), timedelta(0)), 0, "r-2", None)
        assert self.cases == ["k-1", "k-2"] and self.screenings == ["s-0"] and self.samples == [("s-0", "r-2")]

    @rule(moment=moments, case=mostly([None], CASES, one_in=4), resident=residents,
          kind=st.sampled_from(["home", "centralized", "monitoring"]), days=days_ago,
          where=mostly([None], ["h-1", "h-9"], one_in=5))
    def open_case(self, moment, case, resident, kind, days, where):
        """A case id given by the caller (one of a few) or made by the runtime (fresh)."""
        common = self.common(moment)
        case = case or f"k-{common['command_id']}"
        cmd = OpenCase(**common, community=NANGONG, resident=resident, kind=kind, reason="close_contact",
                       starts_on=CONFIG.day(common["occurred_at"]) - timedelta(days=days), case=case,
                       household=where, compound="c-1" if where else None)

        def facts(c):  # as handlers.open_case / _where
            known = RESIDENTS.get(c.resident)
            if known is not None and c.household is not None and c.household != known.household:
                raise Invalid(f"resident {c.resident} lives in household {known.household}", field="household")
            if known is None and c.household is not None:
                known = Resident(resident=c.resident, community=c.community, household=c.household,
                                 compound=c.compound, building=c.building)
            return Facts(config=CONFIG, case=self.state(case_stream(c.case)),
                         open_case=self.open_case_of(c.resident), resident=known)
        cmd, events = self.decide(cmd, facts)
        if events is not None:
            self.append(case_stream(cmd.case), events, cmd)

    def pick_case(self, pick: int, *stages: str) -> str:
        """A case that exists: an open one in ``stages`` (if any); from 30, any case, whatever its
        stage; 40: one that never will."""
        if pick == 40:
            return "k-never"
        states = [self.state(case_stream(c)) for c in self.cases]
        some = [c.case for c in states if not c.closed and c.stage in stages and pick < 30] or self.cases
        return some[pick % len(some)]

    @rule(moment=moments, pick=picks, days=days_ago, temperature=mostly([36.6], [37.3, 38.5], one_in=4),
          symptoms=mostly([[]], [["cough"]], one_in=6))
    @precondition(lambda self: self.cases)
    def record_checkin(self, moment, pick, days, temperature, symptoms):
        common = self.common(moment)
        cmd = RecordCheckin(**common, case=self.pick_case(pick, "home", "centralized", "monitoring"),
                            on=CONFIG.day(common["occurred_at"]) - timedelta(days=days),
                            temperature_c=temperature, symptoms=symptoms)
        cmd, events = self.decide(cmd, lambda c: Facts(config=CONFIG, case=self.state(case_stream(c.case)),
                                                       day=self.state(day_stream(c.case, c.on))))
        if events is not None:
            self.append(day_stream(cmd.case, cmd.on), events, cmd)

    @rule(moment=moments, pick=picks, to=st.sampled_from(["centralized", "hospital"]))
    @precondition(lambda self: self.cases)
    def transfer_case(self, moment, pick, to):
        cmd = TransferCase(**self.common(moment), case=self.pick_case(pick, "home", "centralized", "hospital",
                                                                      "monitoring"), to=to)
        cmd, events = self.decide(cmd, lambda c: Facts(config=CONFIG, case=self.state(case_stream(c.case))))
        if events is not None:
            self.append(case_stream(cmd.case), events, cmd)

    @rule(moment=moments, pick=picks, days=days_ago)
    @precondition(lambda self: self.cases)
    def release_case(self, moment, pick, days):
        common = self.common(moment)
        cmd = ReleaseCase(**common, case=self.pick_case(pick, "home", "centralized", "hospital", "monitoring"),
                          on=CONFIG.day(common["occurred_at"]) - timedelta(days=days))
        cmd, events = self.decide(cmd, lambda c: Facts(config=CONFIG, case=self.state(case_stream(c.case))))
        if events is not None:
            self.append(case_stream(cmd.case), events, cmd)

    @rule(moment=moments, days=mostly([0, 1], [2, -1], one_in=4), picked=st.lists(picks, min_size=1, max_size=4))
    @precondition(lambda self: self.cases)
    def record_missed_checkins(self, moment, days, picked):
        """The evening sweep, as handlers.record_missed_checkins: each case on its own, refusals skipped."""
        common = self.common(moment)
        cases = list(dict.fromkeys(self.pick_case(p, "home", "centralized", "monitoring") for p in picked))
        cmd = RecordMissedCheckins(**common, on=CONFIG.day(common["occurred_at"]) - timedelta(days=days),
                                   cases=cases)
        try:
            cmd = validate(cmd)
            check_deadline_passed(cmd, CONFIG)
        except CommandError:
            return
        for case_id in cmd.cases:
            stream = day_stream(case_id, cmd.on)
            try:
                event = missed_checkin(self.state(case_stream(case_id)), self.state(stream), case_id, cmd, CONFIG)
            except CommandError:
                continue
            self.append(stream, [event], cmd)

    @rule(moment=moments, lift=st.booleans(), compound=mostly(list(COMPOUNDS), ["c-9"]),
          building=mostly([None, "b1", "b2"], ["b9"]))
    def seal_or_lift(self, moment, lift, compound, building):
        cmd = (LiftSeal if lift else Seal)(**self.common(moment), community=NANGONG, compound=compound,
                                           building=building)
        stream = seal_stream(NANGONG, compound)
        cmd, events = self.decide(cmd, lambda c: Facts(config=CONFIG, seals=self.state(stream),
                                                       compound=COMPOUNDS.get(c.compound)))
        if events is not None:
            self.append(stream, events, cmd)

    @rule(moment=moments, screening=mostly([None], SCREENINGS, one_in=5), compound=mostly(list(COMPOUNDS), ["c-9"]),
          days_ahead=mostly([0, 1], [-1, 3]))
    def schedule_screening(self, moment, screening, compound, days_ahead):
        """A round's id given by the caller (one of a few) or made by the runtime (fresh)."""
        common = self.common(moment)
        cmd = ScheduleScreening(**common, community=NANGONG, compound=compound,
                                on=CONFIG.day(common["occurred_at"]) + timedelta(days=days_ahead),
                                slots=[SlotIn(label="residents", from_="07:00", to="11:00"),
                                       SlotIn(label="students", from_="06:30", to="07:00")],
                                screening=screening or f"s-{common['command_id']}")
        stream = screening_stream(cmd.screening)
        cmd, events = self.decide(cmd, lambda c: Facts(config=CONFIG, screening=self.state(stream),
                                                       compound=COMPOUNDS.get(c.compound)))
        if events is not None:
            self.screenings.append(cmd.screening)
            self.append(stream, events, cmd)

    @rule(moment=moments, pick=picks, resident=mostly(["r-1", "r-2", "r-3"], ["r-4", "r-9"], one_in=5),
          slot=mostly([None, "students"], ["night"]))
    @precondition(lambda self: self.screenings)
    def record_sample(self, moment, pick, resident, slot):
        """In a round scheduled (40: one never scheduled)."""
        screening = "s-never" if pick == 40 else self.screenings[pick % len(self.screenings)]
        cmd = RecordSample(**self.common(moment), screening=screening, resident=resident, slot=slot)
        stream = sample_stream(screening, resident)
        cmd, events = self.decide(cmd, lambda c: Facts(config=CONFIG, screening=self.state(screening_stream(screening)),
                                                       sample=self.state(stream), resident=RESIDENTS.get(resident)))
        if events is not None:
            self.append(stream, events, cmd)

    @rule(moment=moments, pick=picks, result=st.sampled_from(["negative", "positive"]),
          case=mostly([None], CASES, one_in=4))
    @precondition(lambda self: self.samples)
    def record_result(self, moment, pick, result, case):
        """Of a sample without a result, if any (from 30: any sample)."""
        waiting = [(sc, r) for sc, r in self.samples if self.state(sample_stream(sc, r)).result is None]
        samples = waiting if waiting and pick < 30 else self.samples
        screening, resident = samples[pick % len(samples)]
        common = self.common(moment)
        cmd = RecordResult(**common, screening=screening, resident=resident, result=result,
                           case=case or f"k-p{common['command_id']}")

        def facts(c):  # as handlers.record_result
            loaded = Facts(config=CONFIG, screening=self.state(screening_stream(c.screening)),
                           sample=self.state(sample_stream(c.screening, c.resident)))
            if c.result == "positive":
                loaded = Facts(config=CONFIG, screening=loaded.screening, sample=loaded.sample,
                               case=self.state(case_stream(c.case)), open_case=self.open_case_of(c.resident),
                               resident=RESIDENTS.get(c.resident))
            return loaded
        cmd, events = self.decide(cmd, facts)
        if events is None:
            return
        result_event, *opened = events
        self.append(sample_stream(screening, resident), [result_event], cmd)
        if opened:
            self.append(case_stream(cmd.case), opened, cmd)
        assert (result_event.case is not None) == bool(opened)
        if result == "positive":
            assert self.open_case_of(resident) is not None, f"{resident} tested positive and has no open case"

    # -- what always holds -----------------------------------------------------------------------

    @invariant()
    def a_resident_has_at_most_one_open_case(self):
        open_cases: dict[str, list[str]] = {}
        for case_id in self.cases:
            case = self.state(case_stream(case_id))
            if not case.closed:
                open_cases.setdefault(case.resident, []).append(case_id)
        twice = {r: cs for r, cs in open_cases.items() if len(cs) > 1}
        assert not twice, f"residents with more than one open case: {twice}"

    @invariant()
    def every_days_stream_is_one_day_of_its_case(self):
        for stream, day in self.record.states.items():
            if isinstance(day, Day):
                on = date.fromisoformat(stream.rsplit(":", 1)[1])
                assert on >= self.case_of_day(stream).starts_on
                assert day.checkins == sum(isinstance(e, CheckinRecorded) for e in self.record.events(stream))

    @invariant()
    def seals_are_what_was_sealed_and_not_lifted(self):
        for stream, seals in self.record.states.items():
            if isinstance(seals, Seals):
                whole, buildings = False, set()
                for e in self.record.events(stream):
                    if e.building is None:
                        whole = isinstance(e, AreaSealed)
                    elif isinstance(e, AreaSealed):
                        buildings.add(e.building)
                    else:
                        buildings.discard(e.building)
                assert (seals.whole, seals.buildings) == (whole, buildings)

    def teardown(self):
        self.record.check_replay()


TestQuarantineProperties = Quarantine.TestCase
TestQuarantineProperties.settings = settings(max_examples=50, **MACHINE)


# -- a release dated before the hospital admission it ends ------------------------------------------


@settings(max_examples=25, deadline=None, database=None, phases=QUICK_PHASES)
@given(kind=st.sampled_from(["home", "centralized"]), days_before=st.integers(1, 10), stay=st.integers(0, 5),
       released_on=st.integers(0, 15))
def test_a_release_from_hospital_is_never_dated_before_the_admission(kind, days_before, stay, released_on):
    """Given a case opened on any day, taken to hospital some days later and released from it after
    any stay, on any day the staff give, then the release is refused or dated on or after the day
    of admission (and so no day spent in hospital falls due for a check-in)."""
    opened_at = START
    admitted_at = opened_at + timedelta(days=days_before, hours=1)
    release_at = admitted_at + timedelta(days=stay)
    on = CONFIG.day(opened_at) + timedelta(days=min(released_on, days_before + stay))
    case = None
    for cmd in (
        OpenCase(command_id="c-1", actor=STAFF, occurred_at=opened_at, community=NANGONG, resident="r-1",
                 kind=kind, reason="close_contact", starts_on=CONFIG.day(opened_at), case="k-1"),
        TransferCase(command_id="c-2", actor=STAFF, occurred_at=admitted_at, case="k-1", to="hospital"),
    ):
        for event in decide(Facts(config=CONFIG, case=case, resident=RESIDENTS["r-1"]), cmd):
            case = evolve(case, event)
    release = ReleaseCase(command_id="c-3", actor=STAFF, occurred_at=release_at, case="k-1", on=on)
    try:
        released = decide(Facts(config=CONFIG, case=case), release)
    except CommandError:
        return
    admitted_on = CONFIG.day(admitted_at)
    assert released[0].on >= admitted_on, (
        f"case k-1 taken to hospital on {admitted_on} and released from it on {released[0].on}")
