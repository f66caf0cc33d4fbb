"""The registry's rules of the committee's working day (issue 17), as stories: given events ->
when update_resident, record_call, record_tip_off or follow_up_tip_off -> then events or a refusal."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from services.registry import commands
from services.registry.commands import FollowUpTipOff, RecordCall, RecordTipOff, UpdateResident
from services.registry.decide import Facts, decide
from services.registry.domain import call_stream, replay, resident_stream, target_stream, tip_off_stream
from services.registry.worklists import waited_hours
from shared.contracts.registry import (
    CallRecorded,
    ResidentErased,
    ResidentUpdated,
    TipOffFollowedUp,
    TipOffRecorded,
)
from shared.errors import Conflict, Invalid, NotFound, Rejected
from tests.unit.test_registry_domain import (
    AT,
    COMMUNITY,
    LATER,
    STAFF,
    arrival_registered,
    common,
    compound_registered,
    household_registered,
    moved_out,
    resident_registered,
)

COMPOUND = replay([compound_registered()])
HOUSEHOLD = replay([household_registered()])  # h-201 in building b2 of sunny-garden
RESIDENT = replay([resident_registered()])  # r-wang, elderly_alone
ARRIVAL = replay([arrival_registered()])  # a-1 of r-wang


def given(*events):
    return replay(events)


def rejected(facts: Facts, cmd, reason: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        decide(facts, cmd)
    assert info.value.reason == reason and info.value.code == "rejected"
    return info.value


# -- update_resident -------------------------------------------------------------------------


def update(vulnerabilities, **kw) -> UpdateResident:
    return UpdateResident(**common(resident="r-wang", vulnerabilities=vulnerabilities, **kw))


def test_new_vulnerabilities_replace_the_old_ones_in_the_event():
    [event] = decide(Facts(resident=RESIDENT), update(["limited_mobility", "medical_device"]))
    assert event == ResidentUpdated(
        community=COMMUNITY, resident="r-wang", household="h-201", compound="sunny-garden", building="b2",
        vulnerabilities=["limited_mobility", "medical_device"], updated_at=LATER, updated_by=STAFF)


def test_an_empty_list_clears_the_flags_and_the_resident_then_has_none():
    events = decide(Facts(resident=RESIDENT), update([]))
    assert given(resident_registered(), *events).vulnerabilities == ()


def test_the_same_flags_again_in_any_order_is_a_no_op_refused():
    flagged = given(resident_registered(vulnerabilities=["elderly_alone", "chronic_illness"]))
    error = rejected(Facts(resident=flagged), update(["chronic_illness", "elderly_alone"]), "no_change")
    assert "already exactly these" in error.message


def test_updating_an_unknown_resident_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(), update(["elderly_alone"]))
    assert info.value.field == "resident"


def test_a_resident_who_moved_out_or_was_erased_is_not_updated():
    rejected(Facts(resident=given(resident_registered(), moved_out())), update([]), "moved_out")
    erased = ResidentErased(community=COMMUNITY, resident="r-wang", household="h-201", compound="sunny-garden",
                            building="b2", legal_basis="court order", erased_at=AT, erased_by=STAFF)
    rejected(Facts(resident=given(resident_registered(), erased)), update([]), "erased")


def test_update_resident_appends_to_the_resident_stream_and_refuses_a_flag_twice():
    assert target_stream(update([])) == resident_stream("r-wang")
    with pytest.raises(Invalid) as info:
        commands.validate(update(["elderly_alone", "elderly_alone"]))
    assert info.value.field == "vulnerabilities[1]"


# -- record_call -----------------------------------------------------------------------------


def call(outcome="reached_at_home", **kw) -> RecordCall:
    return RecordCall(**common(resident="r-wang", outcome=outcome, call="call-1", **kw))


def test_a_call_to_a_returnee_is_recorded_against_their_arrival():
    [event] = decide(Facts(resident=RESIDENT, arrival=ARRIVAL), call("no_answer"))
    assert event == CallRecorded(
        community=COMMUNITY, call="call-1", resident="r-wang", household="h-201", compound="sunny-garden",
        building="b2", arrival="a-1", outcome="no_answer", called_at=LATER, called_by=STAFF)
    assert target_stream(call()) == call_stream("call-1")


def test_a_resident_with_no_arrival_is_not_a_returnee_to_screen():
    error = rejected(Facts(resident=RESIDENT), call(), "not_a_returnee")
    assert "register_arrival" in error.message


def test_an_arrival_named_but_unknown_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(resident=RESIDENT), call(arrival="a-9"))
    assert info.value.field == "arrival"


def test_another_residents_arrival_is_refused():
    theirs = given(arrival_registered(resident="r-li"))
    rejected(Facts(resident=RESIDENT, arrival=theirs), call(arrival="a-1"), "arrival_of_another_resident")


def test_calls_go_to_residents_who_still_live_here():
    with pytest.raises(NotFound):
        decide(Facts(arrival=ARRIVAL), call())
    rejected(Facts(resident=given(resident_registered(), moved_out()), arrival=ARRIVAL), call(), "moved_out")


def test_a_call_id_taken_is_a_conflict():
    with pytest.raises(Conflict) as info:
        decide(Facts(resident=RESIDENT, arrival=ARRIVAL, call=given(*decide(
            Facts(resident=RESIDENT, arrival=ARRIVAL), call()))), call())
    assert info.value.field == "call"


def test_a_call_outcome_outside_the_set_names_the_set():
    payload = msgspec.json.encode({"command_id": "c", "actor": STAFF, "resident": "r-wang", "outcome": "maybe"})
    with pytest.raises(Invalid) as info:
        commands.decode("record_call", payload)
    assert info.value.field == "outcome" and "reached_at_home" in info.value.message


# -- record_tip_off, follow_up_tip_off -------------------------------------------------------


def tip_off(**kw) -> RecordTipOff:
    return RecordTipOff(**common(**{"community": COMMUNITY, "compound": "sunny-garden", "kind": "not_staying_home",
                                    "tip_off": "t-1", **kw}))


def recorded(**kw) -> TipOffRecorded:
    return TipOffRecorded(**{"community": COMMUNITY, "tip_off": "t-1", "compound": "sunny-garden", "building": None,
                             "household": None, "kind": "not_staying_home", "recorded_at": LATER,
                             "recorded_by": STAFF, **kw})


def test_a_tip_off_about_a_compound_is_recorded_without_its_words():
    assert decide(Facts(compound=COMPOUND), tip_off(note="邻居说他每天出门")) == [recorded()]


def test_a_tip_off_about_a_household_takes_its_building():
    [event] = decide(Facts(compound=COMPOUND, household=HOUSEHOLD), tip_off(household="h-201"))
    assert (event.building, event.household) == ("b2", "h-201")


def test_a_tip_off_where_nothing_is_registered_is_not_found():
    for facts, cmd, field in (
            (Facts(), tip_off(), "compound"),
            (Facts(compound=COMPOUND), tip_off(building="b9"), "building"),
            (Facts(compound=COMPOUND), tip_off(household="h-999"), "household"),
            (Facts(compound=COMPOUND, household=given(household_registered(compound="other"))),
             tip_off(household="h-201"), "household")):
        with pytest.raises(NotFound) as info:
            decide(facts, cmd)
        assert info.value.field == field


def test_a_household_named_with_another_building_is_refused():
    rejected(Facts(compound=COMPOUND, household=HOUSEHOLD), tip_off(household="h-201", building="b1"),
             "household_elsewhere")


def test_a_tip_off_id_taken_is_a_conflict():
    with pytest.raises(Conflict):
        decide(Facts(compound=COMPOUND, tip_off=given(recorded())), tip_off())


def test_a_tip_off_note_with_a_phone_number_is_refused():
    with pytest.raises(Invalid) as info:
        commands.validate(tip_off(note="call him on 138 0013 8000"))
    assert info.value.field == "note"


def follow_up(outcome="confirmed", **kw) -> FollowUpTipOff:
    return FollowUpTipOff(**common(tip_off="t-1", outcome=outcome, **kw))


def test_a_tip_off_is_followed_up_once_with_what_was_found():
    assert decide(Facts(tip_off=given(recorded(building="b2"))), follow_up("unfounded")) == [TipOffFollowedUp(
        community=COMMUNITY, tip_off="t-1", compound="sunny-garden", building="b2", household=None,
        outcome="unfounded", followed_up_at=LATER, followed_up_by=STAFF)]
    assert target_stream(follow_up()) == tip_off_stream("t-1") == target_stream(tip_off())


def test_a_second_follow_up_is_refused_and_names_the_first():
    done = given(recorded(), *decide(Facts(tip_off=given(recorded())), follow_up("referred")))
    error = rejected(Facts(tip_off=done), follow_up("confirmed"), "already_followed_up")
    assert "referred" in error.message


def test_following_up_an_unknown_tip_off_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(), follow_up())
    assert info.value.field == "tip_off"


# -- the work list's wait ------------------------------------------------------------------


def test_the_wait_is_counted_in_hours_by_the_clock_given_never_below_zero():
    registered = datetime(2020, 2, 17, 8, 0, tzinfo=timezone.utc)
    assert waited_hours(registered, registered + timedelta(hours=26, minutes=20)) == 26.3
    assert waited_hours(registered, registered - timedelta(minutes=5)) == 0.0
