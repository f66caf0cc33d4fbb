"""The checkpoint's gates, control levels, passes and shifts as stories: given events, when a command,
then events or an error."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.checkpoint.commands import (
    EndShift,
    IssuePasses,
    ReplacePass,
    RevokePass,
    SetControlLevel,
    SetGate,
    StartShift,
)
from services.checkpoint.decide import Facts, decide
from services.checkpoint.domain import (
    Compound,
    Control,
    Household,
    Passage,
    Passes,
    Shift,
    evolve,
    replay,
)
from shared.contracts.checkpoint import (
    ControlLevelSet,
    FeverDetected,
    GateClosed,
    GateOpened,
    PassageAllowed,
    PassageAllowedV1,
    PassageDenied,
    PassageDeniedV1,
    PassIssued,
    PassIssuedV1,
    PassRevoked,
    PassRevokedV1,
    ShiftEnded,
    ShiftStarted,
)
from shared.errors import Conflict, NotFound, Rejected

AT = datetime(2022, 4, 2, 6, 0, tzinfo=timezone(timedelta(hours=8)))
LATER = AT + timedelta(hours=6)
COMMUNITY = "jingan.pengpu.gongkang"
STAFF = "staff:secretary-liu"
COMPOUND = Compound(community=COMMUNITY, compound="gongkang-2", buildings=("b1", "b2"),
                    gates=tuple(f"g{i}" for i in range(1, 8)))  # the compound that merged 7 gates into 2


def common(**kw) -> dict:
    return {"command_id": "c-1", "actor": STAFF, "occurred_at": LATER, **kw}


def place(**kw) -> dict:
    return {"community": COMMUNITY, "compound": "gongkang-2", **kw}


def rejected(facts: Facts, cmd, reason: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        decide(facts, cmd)
    assert info.value.reason == reason and info.value.code == "rejected"
    return info.value


# -- gates ---------------------------------------------------------------------------------------------


def gate_closed(gate: str) -> GateClosed:
    return GateClosed(community=COMMUNITY, compound="gongkang-2", gate=gate, closed_at=AT, closed_by=STAFF)


def set_gate(gate="g3", open=False) -> SetGate:
    return SetGate(**common(**place(gate=gate, open=open)))


def test_a_gate_is_closed():
    assert decide(Facts(compound=COMPOUND), set_gate()) == [GateClosed(
        community=COMMUNITY, compound="gongkang-2", gate="g3", closed_at=LATER, closed_by=STAFF)]


def test_seven_gates_merged_into_two():
    control = replay(gate_closed(g) for g in ("g3", "g4", "g5", "g6", "g7"))
    assert control == Control(community=COMMUNITY, compound="gongkang-2",
                              closed_gates=frozenset({"g3", "g4", "g5", "g6", "g7"}))


def test_a_closed_gate_is_opened_again():
    control = replay([gate_closed("g3")])
    [event] = decide(Facts(compound=COMPOUND, control=control), set_gate(open=True))
    assert event == GateOpened(community=COMMUNITY, compound="gongkang-2", gate="g3", opened_at=LATER,
                               opened_by=STAFF)
    assert evolve(control, event).closed_gates == frozenset()


def test_closing_a_closed_gate_or_opening_an_open_one_is_refused():
    rejected(Facts(compound=COMPOUND, control=replay([gate_closed("g3")])), set_gate(), "gate_already_closed")
    rejected(Facts(compound=COMPOUND), set_gate(open=True), "gate_already_open")


def test_a_gate_must_be_one_of_the_compounds():
    with pytest.raises(NotFound) as info:
        decide(Facts(compound=COMPOUND), set_gate(gate="east"))
    assert info.value.field == "gate"


def test_a_compound_must_be_registered_in_the_community():
    with pytest.raises(NotFound) as info:
        decide(Facts(), set_gate())
    assert info.value.field == "compound"
    other = Compound(community="putuo.wanli.wanli-3", compound="gongkang-2", buildings=(), gates=("g3",))
    with pytest.raises(NotFound):
        decide(Facts(compound=other), set_gate())


# -- control levels -------------------------------------------------------------------------------------


def set_level(level: str) -> SetControlLevel:
    return SetControlLevel(**common(**place(level=level)))


def test_closed_management_begins():
    assert decide(Facts(compound=COMPOUND), set_level("closed")) == [ControlLevelSet(
        community=COMMUNITY, compound="gongkang-2", level="closed", previous="open", set_at=LATER, set_by=STAFF)]


def test_the_level_follows_its_events_and_a_repeat_is_refused():
    control = replay([ControlLevelSet(community=COMMUNITY, compound="gongkang-2", level="sealed",
                                      previous="open", set_at=AT, set_by=STAFF)])
    assert control.level == "sealed"
    rejected(Facts(compound=COMPOUND, control=control), set_level("sealed"), "level_unchanged")
    assert decide(Facts(compound=COMPOUND, control=control), set_level("open"))[0].previous == "sealed"


def test_a_level_needs_a_registered_compound():
    with pytest.raises(NotFound):
        decide(Facts(), set_level("closed"))


# -- passes ---------------------------------------------------------------------------------------------

H = {h: Household(household=h, community=COMMUNITY, compound="gongkang-2", building="b1")
     for h in ("h-1", "h-2", "h-3")}
#: Fresh pass ids, as the handler makes them (it keeps their printed numbers: decide never sees one).
FRESH = tuple(f"p-{i}" for i in range(10))


def issue(households=("h-1", "h-2", "h-3"), per_household=1, **kw) -> IssuePasses:
    return IssuePasses(**common(**place(households=list(households) if households else None,
                                        per_household=per_household, **kw)))


def issued(household="h-1", n=0, **kw) -> PassIssued:
    return PassIssued(**{"community": COMMUNITY, "pass_": f"p-{n}", "compound": "gongkang-2",
                         "household": household, "issued_at": LATER, "issued_by": STAFF, **kw})


def held(*events) -> Passes:
    return replay(events)


def test_passes_are_issued_one_per_household_with_the_ids_the_handler_made():
    facts = Facts(compound=COMPOUND, households=H, new_passes=FRESH)
    assert decide(facts, issue()) == [issued("h-1", 0), issued("h-2", 1), issued("h-3", 2)]


def test_two_passes_per_household():
    events = decide(Facts(compound=COMPOUND, households=H, new_passes=FRESH), issue(("h-1",), per_household=2))
    assert [(e.household, e.pass_) for e in events] == [("h-1", "p-0"), ("h-1", "p-1")]


def test_issuing_again_skips_households_that_hold_their_pass():
    passes = {"h-1": held(issued("h-1", 7, issued_at=AT))}
    events = decide(Facts(compound=COMPOUND, households=H, passes=passes, new_passes=FRESH), issue())
    assert [(e.household, e.pass_) for e in events] == [("h-2", "p-0"), ("h-3", "p-1")]


def test_issuing_again_tops_households_up():
    passes = {"h-1": held(issued("h-1", 7, issued_at=AT)), "h-2": None}
    events = decide(Facts(compound=COMPOUND, households=H, passes=passes, new_passes=FRESH),
                    issue(("h-1", "h-2"), per_household=2))
    assert [e.household for e in events] == ["h-1", "h-2", "h-2"]


def test_issuing_when_every_household_is_full_is_refused():
    passes = {h: held(issued(h, i, issued_at=AT)) for i, h in enumerate(H)}
    rejected(Facts(compound=COMPOUND, households=H, passes=passes, new_passes=FRESH), issue(), "already_issued")


def test_a_revoked_pass_no_longer_counts_when_topping_up():
    passes = {"h-1": held(issued("h-1", 7, issued_at=AT), revoked("p-7"))}
    [event] = decide(Facts(compound=COMPOUND, households=H, passes=passes, new_passes=FRESH), issue(("h-1",)))
    assert event.pass_ == "p-0"


def test_all_households_means_every_household_the_directory_knows():
    events = decide(Facts(compound=COMPOUND, households=H, new_passes=FRESH),
                    issue(None, all_households=True))
    assert [e.household for e in events] == ["h-1", "h-2", "h-3"]


def test_a_compound_without_households_gets_no_passes():
    rejected(Facts(compound=COMPOUND), issue(None, all_households=True), "no_households")


def test_an_unregistered_household_fails_the_whole_issue():
    with pytest.raises(NotFound) as info:
        decide(Facts(compound=COMPOUND, households=H, new_passes=FRESH), issue(("h-1", "h-9")))
    assert info.value.field == "households[1]"


def test_a_household_of_another_compound_fails_the_whole_issue():
    elsewhere = {**H, "h-x": Household(household="h-x", community=COMMUNITY, compound="other", building="b1")}
    with pytest.raises(NotFound) as info:
        decide(Facts(compound=COMPOUND, households=elsewhere, new_passes=FRESH), issue(("h-x",)))
    assert "not in compound gongkang-2" in info.value.message


def test_more_passes_than_a_reply_can_carry_are_refused():
    many = {f"h-{i}": Household(household=f"h-{i}", community=COMMUNITY, compound="gongkang-2", building="b1")
            for i in range(3001)}
    fresh = tuple(f"p-{i}" for i in range(6002))
    rejected(Facts(compound=COMPOUND, households=many, new_passes=fresh),
             issue(None, all_households=True, per_household=2), "too_many_passes")


def test_the_handler_must_make_enough_pass_ids():
    with pytest.raises(ValueError):
        decide(Facts(compound=COMPOUND, households=H, new_passes=FRESH[:2]), issue())


def revoke(pass_="p-0", reason="lost") -> RevokePass:
    return RevokePass(**common(pass_=pass_, reason=reason))


def revoked(pass_="p-0", **kw) -> PassRevoked:
    return PassRevoked(**{"community": COMMUNITY, "pass_": pass_, "compound": "gongkang-2", "household": "h-1",
                          "reason": "lost", "revoked_at": LATER, "revoked_by": STAFF, **kw})


def test_a_lost_pass_is_revoked_by_its_id():
    passes = {"h-1": held(issued())}
    assert decide(Facts(passes=passes), revoke()) == [revoked()]


def test_a_revoked_pass_cannot_be_revoked_again():
    rejected(Facts(passes={"h-1": held(issued(), revoked())}), revoke(), "already_revoked")


def test_revoking_an_unknown_pass_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(passes={"h-1": None}), revoke())
    assert info.value.field == "pass"


def test_a_pass_is_replaced_in_one_step():
    facts = Facts(passes={"h-1": held(issued())}, new_passes=("p-new",))
    old, new = decide(facts, ReplacePass(**common(pass_="p-0")))
    assert old == revoked(replaced_by="p-new")
    assert new == issued(pass_="p-new", replaces="p-0")
    after = replay([old, new], held(issued()))
    assert after.active == ("p-new",) and after.revoked == frozenset({"p-0"})


# -- passes recorded in schema 1, with their printed numbers ------------------------------------------
# Streams recorded before pass numbers left the bus hold schema-1 events; a handler loads them
# like any other.


def issued_v1(household="h-1", n=0, **kw) -> PassIssuedV1:
    return PassIssuedV1(**{"community": COMMUNITY, "pass_": f"p-{n}", "number": f"NUMBER{n:04d}",
                           "compound": "gongkang-2", "household": household, "issued_at": AT,
                           "issued_by": STAFF, **kw})


def revoked_v1(pass_="p-0", **kw) -> PassRevokedV1:
    return PassRevokedV1(**{"community": COMMUNITY, "pass_": pass_, "compound": "gongkang-2", "household": "h-1",
                            "reason": "lost", "number": "NUMBER0000", "revoked_at": LATER, "revoked_by": STAFF,
                            **kw})


def test_a_household_stream_of_schema_1_events_gives_the_state_of_schema_2():
    old = [issued_v1(n=0), issued_v1(n=1), revoked_v1("p-0", replaced_by="p-2"),
           issued_v1(n=2, replaces="p-0"), issued_v1(n=3), revoked_v1("p-3", number="NUMBER0003")]
    new = [e.upcast() for e in old]
    assert [type(e) for e in new] == [PassIssued, PassIssued, PassRevoked, PassIssued, PassIssued, PassRevoked]
    assert replay(old) == replay(new) == Passes(community=COMMUNITY, compound="gongkang-2", household="h-1",
                                                active=("p-1", "p-2"), revoked=frozenset({"p-0", "p-3"}))


def test_a_stream_begun_in_schema_1_goes_on_in_schema_2():
    given = held(issued_v1(n=0), issued_v1(n=7))
    [event] = decide(Facts(passes={"h-1": given}), revoke())
    assert event == revoked()  # no number: none is needed, none is known
    after = evolve(given, event)
    assert after.active == ("p-7",)
    topped = decide(Facts(compound=COMPOUND, households=H, passes={"h-1": after}, new_passes=FRESH),
                    issue(("h-1",), per_household=2))
    assert [e.pass_ for e in topped] == ["p-0"]  # one short of two: the schema-1 pass counts


def test_an_upcast_event_keeps_every_field_but_the_number():
    old = issued_v1(replaces="p-9")
    assert old.upcast() == issued(issued_at=AT, replaces="p-9")
    assert revoked_v1(replaced_by="p-1").upcast() == revoked(replaced_by="p-1")
    current = issued()
    assert current.upcast() is current


PASSAGE = dict(community=COMMUNITY, passage="x", compound="gongkang-2", gate="g1", direction="in",
               temperature_c=36.5, checked_at=AT, checked_by=STAFF)


@pytest.mark.parametrize("shown, pass_shown", [
    (dict(pass_="p-0", number="NUMBER0000"), True),  # a pass issued, by its number
    (dict(number="ZZZZZZZZZZ"), True),  # a number that matched no pass
    (dict(resident="r-1"), False),  # no pass
])
def test_a_schema_1_passage_is_read_without_its_number(shown, pass_shown):
    allowed, denied = PassageAllowedV1(**PASSAGE, **shown), PassageDeniedV1(**PASSAGE, reason="fever", **shown)
    kept = {k: v for k, v in shown.items() if k != "number"}
    assert allowed.upcast() == PassageAllowed(**PASSAGE, **kept, pass_shown=pass_shown)
    assert denied.upcast() == PassageDenied(**PASSAGE, reason="fever", **kept, pass_shown=pass_shown)
    assert replay([allowed]) == replay([allowed.upcast()]) == Passage(passage="x", allowed=True)
    assert replay([denied]) == Passage(passage="x", allowed=False, reason="fever")


# -- shifts ---------------------------------------------------------------------------------------------


def start(**kw) -> StartShift:
    return StartShift(**common(**{"community": COMMUNITY, "gate": "g1", "staff": "volunteer:zhang-min",
                                  "shift": "s-1", "occurred_at": AT, **kw}))


def end(**kw) -> EndShift:
    return EndShift(**common(**{"community": COMMUNITY, "gate": "g1", "staff": "volunteer:zhang-min", **kw}))


def started(**kw) -> ShiftStarted:
    return ShiftStarted(**{"community": COMMUNITY, "shift": "s-1", "compound": "gongkang-2", "gate": "g1",
                           "staff": "volunteer:zhang-min", "started_at": AT, "started_by": STAFF, **kw})


ON_SHIFT = replay([started()])


def test_a_volunteer_starts_a_shift_at_a_gate():
    assert decide(Facts(compound=COMPOUND), start()) == [started()]


def test_nobody_is_on_two_shifts_at_once():
    rejected(Facts(compound=COMPOUND, open_shift=ON_SHIFT), start(shift="s-2", gate="g2"), "already_on_shift")


def test_a_shift_needs_a_gate_of_a_compound_of_the_community():
    with pytest.raises(NotFound) as info:
        decide(Facts(), start())
    assert info.value.field == "gate"
    with pytest.raises(NotFound) as info:
        decide(Facts(compound=COMPOUND), start(compound="other"))
    assert info.value.field == "compound"
    with pytest.raises(NotFound):
        decide(Facts(compound=COMPOUND), start(gate="east"))


def test_a_shift_id_is_taken_once():
    with pytest.raises(Conflict):
        decide(Facts(compound=COMPOUND, shift=ON_SHIFT), start())


def test_a_six_hour_shift_ends_with_its_hours():
    assert decide(Facts(shift=ON_SHIFT), end()) == [ShiftEnded(
        community=COMMUNITY, shift="s-1", compound="gongkang-2", gate="g1", staff="volunteer:zhang-min",
        hours=6.0, ended_at=LATER, ended_by=STAFF)]


def test_hours_are_rounded_to_hundredths():
    [event] = decide(Facts(shift=ON_SHIFT), end(occurred_at=AT + timedelta(hours=5, minutes=50)))
    assert event.hours == 5.83


def test_ending_needs_an_open_shift_of_that_staff_at_that_gate():
    rejected(Facts(), end(), "not_on_shift")
    rejected(Facts(shift=replay([started(), *decide(Facts(shift=ON_SHIFT), end())])), end(), "not_on_shift")
    rejected(Facts(shift=ON_SHIFT), end(gate="g2"), "not_on_shift")
    rejected(Facts(shift=ON_SHIFT), end(staff="volunteer:other"), "not_on_shift")
    rejected(Facts(shift=ON_SHIFT), end(compound="other"), "not_on_shift")


def test_a_named_shift_must_exist():
    with pytest.raises(NotFound) as info:
        decide(Facts(), end(shift="s-9"))
    assert info.value.field == "shift"


def test_a_shift_cannot_end_before_it_started():
    rejected(Facts(shift=ON_SHIFT), end(occurred_at=AT - timedelta(minutes=1)), "ends_before_start")


def test_a_shift_follows_its_events():
    [ended] = decide(Facts(shift=ON_SHIFT), end())
    assert evolve(ON_SHIFT, ended) == Shift(shift="s-1", community=COMMUNITY, compound="gongkang-2", gate="g1",
                                            staff="volunteer:zhang-min", started_at=AT, ended=True, hours=6.0)


# -- passages as states ---------------------------------------------------------------------------------


def test_a_denied_passage_with_a_fever_is_remembered_as_such():
    denied = PassageDenied(community=COMMUNITY, passage="x", compound="gongkang-2", gate="g1", direction="in",
                           temperature_c=38.0, reason="fever", checked_at=AT, checked_by=STAFF)
    fever = FeverDetected(community=COMMUNITY, passage="x", compound="gongkang-2", gate="g1", temperature_c=38.0,
                          detected_at=AT, detected_by=STAFF)
    assert replay([denied, fever]) == Passage(passage="x", allowed=False, reason="fever", fever=True)


def test_an_event_applied_to_the_wrong_state_is_a_bug_not_a_state():
    with pytest.raises(TypeError):
        evolve(None, revoked())
    with pytest.raises(TypeError):
        evolve(ON_SHIFT, gate_closed("g1"))
