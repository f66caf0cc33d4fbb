"""Registry, property by property: given ANY sequence of compound, household, resident and arrival
registrations, door-to-door verifications and moves out, on a few ids that keep colliding, at times
that move forward with occasional jumps of days (and a command now and then recorded late),

then
- an arrival is verified at most once, and only an arrival that waits for it;
- a class-B arrival that visited no risk area is cleared on registration and never verified; class
  A, or a risk area visited, waits for verification;
- an arrival is cleared only with the ID card and ticket checked, and a "false A" with them checked
  is always cleared;
- a resident who moved out stays moved out: moved out once, never registered again, no arrival
  registered for them afterwards, never sent to home quarantine;
- every household is in a registered compound and one of its buildings, every resident in a
  registered household, every arrival where its resident lives;
- every stream begins with its one registering event;
- replaying every stream gives exactly the state the decisions were made against.

The commands go through the service's path: ``validate`` (as the runtime does), facts built as
``handlers.py`` builds them (with its ID-number check), ``decide``, the events appended and folded
with ``evolve``. A refusal (any ``CommandError``) writes nothing.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.registry.commands import (
    MoveOut,
    RegisterArrival,
    RegisterCompound,
    RegisterHousehold,
    RegisterResident,
    VerifyArrival,
    validate,
)
from services.registry.config import Config
from services.registry.decide import Facts, decide
from services.registry.domain import (
    Arrival,
    Compound,
    Household,
    Resident,
    arrival_stream,
    compound_stream,
    evolve,
    household_stream,
    resident_stream,
    target_stream,
)
from shared.contracts.registry import (
    ArrivalRegistered,
    ArrivalVerified,
    CompoundRegistered,
    HouseholdRegistered,
    ResidentMovedOut,
    ResidentRegistered,
    Transport,
)
from shared.errors import CommandError, Conflict
from shared.idcard import with_check_digit
from tests.support.record import MACHINE, Record, moments, mostly

CST = timezone(timedelta(hours=8))
START = datetime(2020, 2, 16, 20, 0, tzinfo=CST)
NANGONG = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-wei"
CONFIG = Config()
VALIDATE_ARGS = (CONFIG,)
COMPOUNDS = ["c-1", "c-2"]
HOUSEHOLDS = ["h-1", "h-2", "h-3", "h-4", "h-5", "h-6"]
RESIDENTS = ["r-1", "r-2", "r-3", "r-4", "r-5"]
ARRIVALS = ["a-1", "a-2", "a-3"]
#: A few valid ID-card numbers (the handler refuses a number registered already).
ID_NUMBERS = [with_check_digit(f"31010519800101{i:03d}") for i in range(8)]
REGISTERING = (CompoundRegistered, HouseholdRegistered, ResidentRegistered, ArrivalRegistered)

picks = st.integers(0, 40)


class Registry(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.record = Record(evolve)
        self.now = START
        self.n = 0
        #: the handler's table of ID numbers registered
        self.id_numbers: set[str] = set()
        self.moved_out: set[str] = set()
        self.arrivals: list[str] = []

    # -- the service's path ----------------------------------------------------------------------

    def common(self, moment) -> dict:
        advance, late = moment
        self.now += advance
        self.n += 1
        return {"command_id": f"c-{self.n}", "actor": STAFF, "occurred_at": self.now - late}

    def state(self, stream: str):
        return self.record.state(stream)

    def run(self, cmd, facts):
        """validate, load the facts (``facts(cmd) -> Facts``), decide, append; None if refused."""
        try:
            cmd = validate(cmd, CONFIG)
            events = decide(facts(cmd), cmd)
            if isinstance(cmd, RegisterResident):  # as handlers.register_resident, after decide
                if cmd.id_number in self.id_numbers:
                    raise Conflict("a resident with this ID number is already registered", field="id_number")
                self.id_numbers.add(cmd.id_number)
        except CommandError:
            return None
        stream = target_stream(cmd)
        before = self.state(stream)
        for event in events:
            self.check_event(stream, before, event)
        self.record.append(stream, events, at=cmd.occurred_at, actor=cmd.actor)
        self.record.check_replay([stream])
        for event in events:
            match event:
                case ResidentMovedOut():
                    self.moved_out.add(event.resident)
                case ArrivalRegistered():
                    self.arrivals.append(event.arrival)
        return events

    def check_event(self, stream, before, event) -> None:
        """What each event may only do to the state it is applied to."""
        if isinstance(event, REGISTERING):
            assert before is None, f"{type(event).__name__} in {stream}, which exists already: {before}"
        match event:
            case HouseholdRegistered():
                compound = self.state(compound_stream(event.community, event.compound))
                assert isinstance(compound, Compound) and event.building in compound.buildings, (
                    f"household {event.household} registered in {event.compound}/{event.building}: {compound}")
            case ResidentRegistered():
                household = self.state(household_stream(event.household))
                assert isinstance(household, Household)
                assert (event.community, event.compound, event.building) == (
                    household.community, household.compound, household.building)
                assert event.resident not in self.moved_out, f"{event.resident} moved out and came back"
            case ArrivalRegistered():
                resident = self.state(resident_stream(event.resident))
                assert isinstance(resident, Resident) and not resident.moved_out, (
                    f"arrival {event.arrival} registered for {resident}")
                assert (event.household, event.compound, event.building) == (
                    resident.household, resident.compound, resident.building)
                assert event.requires_verification == (event.city_class == "A" or event.risk_area_visited), (
                    f"class {event.city_class}, risk area visited: {event.risk_area_visited}, "
                    f"requires verification: {event.requires_verification}")
            case ArrivalVerified():
                assert isinstance(before, Arrival)
                assert before.outcome is None, f"arrival {event.arrival} verified again: {before.outcome}"
                assert before.requires_verification, f"arrival {event.arrival} was cleared on registration"
                if event.outcome == "cleared":
                    assert event.documents_checked, f"arrival {event.arrival} cleared on the traveller's word"
                if before.false_a and event.documents_checked:
                    assert event.outcome == "cleared", f"false A {event.arrival}: {event.outcome}"
                if event.outcome == "home_quarantine":
                    assert event.resident not in self.moved_out, (
                        f"{event.resident} moved out and sent to home quarantine here")
            case ResidentMovedOut():
                assert isinstance(before, Resident) and not before.moved_out, f"{event.resident} moved out twice"

    # -- the commands ----------------------------------------------------------------------------

    @initialize()
    def a_compound_with_households_and_residents(self):
        """c-1 with buildings b1 and b2, households h-1 and h-2, residents r-1, r-2 (h-1) and r-3 (h-2):
        registered through the same commands, so the rules below start where people live."""
        none = (timedelta(0), timedelta(0))
        self.register_compound(none, "c-1", ["b1", "b2"])
        self.register_household(none, "h-1", "c-1", "b1")
        self.register_household(none, "h-2", "c-1", "b2")
        for i, (resident, household) in enumerate((("r-1", "h-1"), ("r-2", "h-1"), ("r-3", "h-2"))):
            self.register_resident(none, resident, household, ID_NUMBERS[i], [])
        assert len(self.record.rows) == 6

    @rule(moment=moments, compound=st.sampled_from(COMPOUNDS),
          buildings=st.lists(st.sampled_from(["b1", "b2", "b3"]), min_size=1, max_size=3, unique=True))
    @precondition(lambda self: self.n < 12)
    def register_compound(self, moment, compound, buildings):
        """Early in the day only (the compounds are few, and registered once)."""
        cmd = RegisterCompound(**self.common(moment), community=NANGONG, compound=compound, name="南宫小区",
                               buildings=buildings, gates=["g1"])
        self.run(cmd, lambda c: Facts(compound=self.state(compound_stream(c.community, c.compound))))

    @rule(moment=moments, household=st.sampled_from(HOUSEHOLDS), compound=mostly(COMPOUNDS, ["c-9"]),
          building=mostly(["b1", "b2"], ["b3", "b9"], one_in=4))
    @precondition(lambda self: self.n < 20)
    def register_household(self, moment, household, compound, building):
        """Early in the day only, as residents (but see a_moved_out_resident_registered_again)."""
        cmd = RegisterHousehold(**self.common(moment), community=NANGONG, compound=compound, building=building,
                                address="长宁路 1 号", household=household)
        self.run(cmd, lambda c: Facts(compound=self.state(compound_stream(c.community, c.compound)),
                                      household=self.state(household_stream(c.household))))

    @rule(moment=moments, resident=st.sampled_from(RESIDENTS), household=mostly(HOUSEHOLDS, ["h-9"]),
          id_number=st.sampled_from(ID_NUMBERS),
          vulnerabilities=st.lists(st.sampled_from(["elderly_alone", "limited_mobility"]), unique=True))
    @precondition(lambda self: self.n < 25)
    def register_resident(self, moment, resident, household, id_number, vulnerabilities):
        cmd = RegisterResident(**self.common(moment), household=household, name="王小伟",
                               id_number=id_number, birth_year=1950,
                               vulnerabilities=vulnerabilities, resident=resident)
        self.run(cmd, lambda c: Facts(household=self.state(household_stream(c.household)),
                                      resident=self.state(resident_stream(c.resident))))

    @rule(moment=moments, pick=picks, household=st.sampled_from(HOUSEHOLDS), id_number=st.sampled_from(ID_NUMBERS))
    @precondition(lambda self: self.moved_out)
    def a_moved_out_resident_registered_again(self, moment, pick, household, id_number):
        """Their id given again, in any household, with any ID number."""
        gone = sorted(self.moved_out)
        self.register_resident(moment, gone[pick % len(gone)], household, id_number, [])

    def residents_here(self) -> list[str]:
        return [r for r in RESIDENTS if isinstance(self.state(resident_stream(r)), Resident) and r not in self.moved_out]

    def someone(self, pick: int) -> str:
        """A resident living here (if any); from 36, one who moved out (if any); 40: one never registered."""
        here = self.residents_here() or RESIDENTS
        if pick == 40:
            return "r-6"
        if pick >= 36 and self.moved_out:
            return sorted(self.moved_out)[pick % len(self.moved_out)]
        return here[pick % len(here)]

    @rule(moment=moments, arrival=mostly([None], ARRIVALS, one_in=5), pick=picks,
          city_class=st.sampled_from(["A", "B"]), risk_area_visited=st.booleans(),
          days_ago=mostly([0, 1, 2, 13], [-1, 30]))
    def register_arrival(self, moment, arrival, pick, city_class, risk_area_visited, days_ago):
        resident = self.someone(pick)
        common = self.common(moment)
        cmd = RegisterArrival(**common, resident=resident, origin="武汉", transport=Transport(kind="train", number="G1"),
                              arrived_on=CONFIG.day(common["occurred_at"]) - timedelta(days=days_ago), visited=[],
                              city_class=city_class, risk_area_visited=risk_area_visited,
                              arrival=arrival or f"a-{common['command_id']}")
        self.run(cmd, lambda c: Facts(resident=self.state(resident_stream(c.resident)),
                                      arrival=self.state(arrival_stream(c.arrival))))

    outcomes = st.sampled_from(["cleared", "home_quarantine", "centralized_quarantine", "returned_home"])

    @rule(moment=moments, pick=picks, outcome=outcomes, documents_checked=mostly([True], [False], one_in=3))
    @precondition(lambda self: self.arrivals)
    def verify_arrival(self, moment, pick, outcome, documents_checked):
        """Door to door, at an arrival that waits for it (if any; 40: one never registered); below
        10, at one whose traveller has moved out meanwhile, if any."""
        pending = [a for a in self.arrivals if self.state(arrival_stream(a)).pending] or self.arrivals
        gone = [a for a in pending if self.state(arrival_stream(a)).resident in self.moved_out]
        pending = gone if gone and pick < 10 else pending
        self._verify(moment, "a-never" if pick == 40 else pending[pick % len(pending)], outcome, documents_checked)

    @rule(moment=moments, pick=picks, outcome=outcomes, documents_checked=st.booleans())
    @precondition(lambda self: self.arrivals)
    def verify_an_arrival_again(self, moment, pick, outcome, documents_checked):
        """At an arrival verified already or cleared on registration (if any)."""
        done = [a for a in self.arrivals if not self.state(arrival_stream(a)).pending] or self.arrivals
        self._verify(moment, done[pick % len(done)], outcome, documents_checked)

    def _verify(self, moment, arrival, outcome, documents_checked):
        cmd = VerifyArrival(**self.common(moment), arrival=arrival, outcome=outcome,
                            documents_checked=documents_checked)

        def facts(c):  # as handlers.verify_arrival: the arrival, then its resident
            a = self.state(arrival_stream(c.arrival))
            return Facts(arrival=a, resident=self.state(resident_stream(a.resident)) if a else None)
        self.run(cmd, facts)

    @rule(moment=moments, pick=picks)
    @precondition(lambda self: len(self.residents_here()) > 1)
    def move_out(self, moment, pick):
        """Someone moves out (while others stay)."""
        resident = self.someone(pick)
        cmd = MoveOut(**self.common(moment), resident=resident, reason="搬家")
        self.run(cmd, lambda c: Facts(resident=self.state(resident_stream(c.resident))))

    def waiting_travellers(self) -> list[str]:
        """Residents living here whose arrival waits for the door-to-door visit."""
        waiting = (self.state(arrival_stream(a)) for a in self.arrivals)
        return sorted({a.resident for a in waiting if a.pending and a.resident not in self.moved_out})

    @rule(moment=moments, pick=picks)
    @precondition(lambda self: self.waiting_travellers() and len(self.residents_here()) > 1)
    def a_traveller_moves_out_before_the_visit(self, moment, pick):
        waiting = self.waiting_travellers()
        cmd = MoveOut(**self.common(moment), resident=waiting[pick % len(waiting)], reason="搬家")
        self.run(cmd, lambda c: Facts(resident=self.state(resident_stream(c.resident))))

    # -- what always holds -----------------------------------------------------------------------

    @invariant()
    def a_moved_out_resident_stays_moved_out(self):
        for resident in self.moved_out:
            r = self.state(resident_stream(resident))
            assert isinstance(r, Resident) and r.moved_out, f"{resident} moved out, and now: {r}"

    @invariant()
    def an_arrival_is_verified_at_most_once_and_class_b_without_risk_never(self):
        for arrival in self.arrivals:
            verified = [e for e in self.record.events(arrival_stream(arrival)) if isinstance(e, ArrivalVerified)]
            a = self.state(arrival_stream(arrival))
            assert len(verified) <= (1 if a.requires_verification else 0), (
                f"arrival {arrival} (class {a.city_class}, risk area: {a.risk_area_visited}) verified "
                f"{len(verified)} times")
            if a.city_class == "B" and not a.risk_area_visited:
                assert not a.pending, f"class-B arrival {arrival} with no risk area waits for verification"

    def teardown(self):
        self.record.check_replay()


TestRegistryProperties = Registry.TestCase
TestRegistryProperties.settings = settings(max_examples=50, **MACHINE)
