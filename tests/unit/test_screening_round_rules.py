"""Screening rounds, the rules of issue 17: codes printed ahead of a round, a sealed area's seal
extended by a new round, and residents told to stay in until their result is back. Stories: given
the events of the record, when a command, then the events (or the refusal naming its rule)."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.quarantine import codes
from services.quarantine.commands import (
    ExtendSeal,
    IssueSampleCodes,
    LiftSeal,
    RecordSample,
    ScheduleScreening,
    Seal,
    SlotIn,
    parse,
)
from services.quarantine.config import Config
from services.quarantine.decide import Compound, Facts, Resident, decide, issue_sample_codes
from services.quarantine.domain import Sample, Seals, replay
from shared.contracts.quarantine import AreaSealed, SampleCodesIssued, SampleTaken, SealExtended
from shared.errors import CommandError, Invalid

CITY = ZoneInfo("Asia/Shanghai")
COMMUNITY = "pudong.jinyang.luoshan-1"
STAFF = "staff:xu-jimin"
GARDEN = Compound(community=COMMUNITY, compound="luoshan-1", buildings=("b1", "b2", "b3"))
WANG = Resident(resident="r-wang", community=COMMUNITY, household="h-101", compound="luoshan-1", building="b1")
LI = Resident(resident="r-li", community=COMMUNITY, household="h-202", compound="luoshan-1", building="b2")
FAR = Resident(resident="r-far", community=COMMUNITY, household="h-9", compound="other", building="b1")


def day(n: int) -> date:
    """Day n of the story (day 1 is 2022-03-25: the report's residents hoped to be let out on the 28th)."""
    return date(2022, 3, 24) + timedelta(days=n)


def at(n: int, clock: str = "09:00") -> datetime:
    return datetime.combine(day(n), time.fromisoformat(clock), tzinfo=CITY)


def common(n: int = 1) -> dict:
    return {"command_id": "c-1", "actor": STAFF, "occurred_at": at(n)}


def given(**facts) -> Facts:
    return Facts(config=Config(), **facts)


def refused(facts: Facts, cmd) -> CommandError:
    with pytest.raises(CommandError) as info:
        decide(facts, cmd)
    return info.value


def schedule(on: date, stay_in: bool = False, n: int = 1) -> ScheduleScreening:
    return ScheduleScreening(**common(n), community=COMMUNITY, compound="luoshan-1", on=on, screening="round-3",
                             slots=[SlotIn(label="everyone", from_="07:00", to="11:00")],
                             stay_in_until_result=stay_in)


def a_round(on: date | None = None, stay_in: bool = False, seals: Seals | None = None):
    """The round's state, as the record replays it."""
    [scheduled, *_] = decide(given(compound=GARDEN, seals=seals), schedule(on or day(3), stay_in))
    return replay([scheduled])


# -- codes issued ahead of the round -------------------------------------------------------------------


def codes_for(*residents: str, n: int = 1, **kw) -> IssueSampleCodes:
    return IssueSampleCodes(**common(n), screening="round-3", residents=list(residents), **kw)


def test_codes_are_printed_ahead_for_the_residents_listed_who_hold_none_yet():
    # Given a round on day 3, and Li already holding a code of it
    screening = a_round()
    facts = given(screening=screening, compound=GARDEN, residents=(WANG, LI), coded=frozenset({"r-li"}))
    # when codes are issued for Wang and Li
    event, new = issue_sample_codes(facts, codes_for("r-wang", "r-li"))
    # then only Wang gets one; the event says how many, never which
    assert [r.resident for r in new] == ["r-wang"]
    assert event == SampleCodesIssued(community=COMMUNITY, screening="round-3", compound="luoshan-1", count=1,
                                      issued_at=at(1), issued_by=STAFF)
    assert replay([event], screening).codes_issued
    # and once everyone asked for holds one, there is nothing to issue
    everyone = replace(facts, coded=frozenset({"r-wang", "r-li"}))
    assert refused(everyone, codes_for("r-wang", "r-li")).reason == "already_issued"


def test_all_residents_of_the_compound_or_of_one_building():
    screening = a_round()
    facts = given(screening=screening, compound=GARDEN, residents=(WANG, LI))
    event, new = issue_sample_codes(facts, codes_for(all_residents=True))
    assert (event.count, event.building, [r.resident for r in new]) == (2, None, ["r-wang", "r-li"])
    err = refused(facts, codes_for(all_residents=True, building="b9"))
    assert (err.code, err.field) == ("not_found", "building")


def test_codes_go_to_residents_of_the_rounds_compound_ahead_of_its_day():
    screening = a_round()
    err = refused(given(screening=screening, compound=GARDEN, residents=(WANG,)), codes_for("r-wang", "r-ghost"))
    assert (err.code, err.field) == ("not_found", "residents[1]")
    assert refused(given(screening=screening, compound=GARDEN, residents=(FAR,)), codes_for("r-far")).reason \
        == "other_compound"
    moved = replace(WANG, moved_out=True)
    assert refused(given(screening=screening, compound=GARDEN, residents=(moved,)), codes_for("r-wang")).reason \
        == "other_compound"
    # the round's day itself is still in time (the slips are handed out at the door); after it, not
    issue_sample_codes(given(screening=screening, compound=GARDEN, residents=(WANG,)), codes_for("r-wang", n=3))
    assert refused(given(screening=screening, compound=GARDEN, residents=(WANG,)), codes_for("r-wang", n=4)).reason \
        == "past_day"
    assert refused(given(screening=None), codes_for("r-wang")).field == "screening"


def test_a_code_reads_back_as_printed_typed_or_misread():
    code = codes.new_code()
    assert len(code) == 8 and set(code) <= set(codes.ALPHABET)
    assert codes.normalize(codes.pretty(code).lower()) == code
    assert codes.normalize("0I1L-ABCD") == codes.normalize("oi1l abcd") == "0111ABCD"
    assert codes.normalize("ABC") is None and codes.normalize("ABCD-EFGU") is None


# -- a sample recorded by its code -----------------------------------------------------------------------


def sample(resident: str | None = "r-wang", code: str | None = None, stay_in: bool = False) -> RecordSample:
    return RecordSample(**common(3), screening="round-3", resident=resident, code=code,
                        stay_in_until_result=stay_in)


def test_a_code_issued_ahead_names_the_resident_sampled():
    # Given a round that printed codes, Wang holding his
    screening = replay([issue_sample_codes(given(screening=a_round(), residents=(WANG,)), codes_for("r-wang"))[0]],
                       a_round())
    # when the sampler scans his slip alone
    [taken] = decide(given(screening=screening, resident=WANG, code_holder="r-wang"), sample(None, "K3QD-X9M2"))
    # then the sample is his (and the code stays off the event)
    assert (taken.resident, taken.compound) == ("r-wang", "luoshan-1")
    # with his id too, the same
    assert decide(given(screening=screening, resident=WANG, code_holder="r-wang"), sample("r-wang", "K3QDX9M2"))


def test_a_code_of_another_resident_or_not_of_the_round_is_refused():
    screening = replace(a_round(), codes_issued=True)
    # Li's slip shown for Wang: whose sample would it be? refused, nothing recorded
    err = refused(given(screening=screening, resident=WANG, code_holder="r-li"), sample("r-wang", "K3QD-X9M2"))
    assert (err.code, err.reason) == ("rejected", "code_of_another_resident")
    # a code the round never printed
    err = refused(given(screening=screening, resident=WANG), sample("r-wang", "ZZZZ-ZZZZ"))
    assert (err.code, err.field) == ("not_found", "code")
    err = refused(given(screening=screening), sample(None, "ZZZZ-ZZZZ"))
    assert (err.code, err.field) == ("not_found", "code")


def test_a_round_that_printed_no_codes_keeps_any_code_given_with_the_resident():
    # (a code from elsewhere, e.g. the city's app, as before issue 17)
    [taken] = decide(given(screening=a_round(), resident=WANG), sample("r-wang", "A-0017"))
    assert taken.resident == "r-wang"
    assert refused(given(screening=a_round()), sample(None, "A-0017")).field == "code"


def test_record_sample_names_the_resident_or_the_code_and_codes_go_to_a_list_or_everyone():
    def invalid(name: str, **fields) -> Invalid:
        with pytest.raises(Invalid) as info:
            parse(name, json.dumps({"command_id": "c-1", "actor": STAFF, **fields}).encode())
        return info.value

    assert invalid("record_sample", screening="round-3").field == "resident"
    by_code = {"command_id": "c", "actor": STAFF, "screening": "round-3", "code": "K3QD-X9M2"}
    assert parse("record_sample", json.dumps(by_code).encode()).resident is None
    assert invalid("issue_sample_codes", screening="round-3").field == "residents"
    assert invalid("issue_sample_codes", screening="round-3", residents=["r-a"], all_residents=True).field \
        == "residents"
    assert invalid("issue_sample_codes", screening="round-3", residents=["r-a"], building="b1").field == "building"
    assert invalid("issue_sample_codes", screening="round-3", residents=["r-a", "r-a"]).field == "residents[1]"


# -- stay in until the result ---------------------------------------------------------------------------


@pytest.mark.parametrize("round_says, sample_says, stays_in", [
    (True, False, True), (False, True, True), (False, False, False)])
def test_the_sampled_stay_in_when_the_round_or_the_sample_says_so(round_says, sample_says, stays_in):
    screening = a_round(stay_in=round_says)
    [taken] = decide(given(screening=screening, resident=WANG), sample(stay_in=sample_says))
    assert isinstance(taken, SampleTaken) and taken.stay_in_until_result is stays_in
    assert replay([taken]) == Sample(screening="round-3", resident="r-wang", stay_in_until_result=stays_in)


def test_a_stay_in_round_says_so_on_its_event():
    [scheduled] = decide(given(compound=GARDEN), schedule(day(3), stay_in=True))
    assert scheduled.stay_in_until_result and replay([scheduled]).stay_in_until_result


# -- a seal's planned end, extended by a new round ------------------------------------------------------


def seal_cmd(cls=Seal, building: str | None = None, n: int = 1, **kw):
    return cls(**common(n), community=COMMUNITY, compound="luoshan-1", building=building, **kw)


def sealed(*events) -> Seals:
    return replay(list(events))


def area_sealed(building: str | None = None, until: date | None = None) -> AreaSealed:
    return AreaSealed(community=COMMUNITY, compound="luoshan-1", building=building, until=until,
                      sealed_at=at(0), sealed_by=STAFF)


def test_a_seal_with_a_planned_end_is_not_lifted_before_it():
    # Given the compound sealed until day 4 (the 28th)
    [event] = decide(given(compound=GARDEN), seal_cmd(until=day(4)))
    seals = sealed(event)
    assert seals.until == {None: day(4)}
    # then it is not lifted on day 3, and is from day 4 on
    assert refused(given(compound=GARDEN, seals=seals), seal_cmd(LiftSeal, n=3)).reason == "seal_not_over"
    [lifted] = decide(given(compound=GARDEN, seals=seals), seal_cmd(LiftSeal, n=4))
    assert replay([lifted], seals) == Seals()
    # a planned end in the past is refused
    assert refused(given(compound=GARDEN), seal_cmd(until=day(0))).reason == "past_day"


def test_a_new_round_on_a_sealed_compound_extends_every_seal_to_its_results():
    # Given the compound sealed until day 4, and building b2 sealed with no planned end
    seals = sealed(area_sealed(until=day(4)), area_sealed("b2"))
    # when a round is scheduled for day 3
    scheduled, *extended = decide(given(compound=GARDEN, seals=seals), schedule(day(3)))
    # then both seals last until 2 days after it (the policy), each saying what it was before
    common_fields = dict(community=COMMUNITY, compound="luoshan-1", until=day(5), screening="round-3",
                         extended_at=at(1), extended_by=STAFF)
    assert extended == [SealExtended(**common_fields, building=None, previous_until=day(4)),
                        SealExtended(**common_fields, building="b2", previous_until=None)]
    seals = replay(extended, seals)
    assert seals.until == {None: day(5), "b2": day(5)}
    # and the lift the residents hoped for on day 4 waits for the results
    assert refused(given(compound=GARDEN, seals=seals), seal_cmd(LiftSeal, n=4)).reason == "seal_not_over"


def test_a_round_extends_no_seal_already_planned_later_and_none_on_an_open_compound():
    assert decide(given(compound=GARDEN, seals=sealed(area_sealed(until=day(9)))), schedule(day(3)))[1:] == []
    assert decide(given(compound=GARDEN, seals=None), schedule(day(3)))[1:] == []
    lifted = replay([decide(given(compound=GARDEN, seals=sealed(area_sealed())), seal_cmd(LiftSeal))[0]],
                    sealed(area_sealed()))
    assert decide(given(compound=GARDEN, seals=lifted), schedule(day(3)))[1:] == []


def test_the_days_a_round_keeps_a_seal_are_policy():
    facts = Facts(config=Config(seal_days_after_screening=7), compound=GARDEN, seals=sealed(area_sealed()))
    assert decide(facts, schedule(day(3)))[1].until == day(10)
    with pytest.raises(ValueError):
        Config(seal_days_after_screening=-1)


def test_staff_extend_a_seal_later_only():
    seals = sealed(area_sealed(until=day(4)))
    [extended] = decide(given(compound=GARDEN, seals=seals), seal_cmd(ExtendSeal, until=day(8)))
    assert (extended.until, extended.previous_until, extended.screening) == (day(8), day(4), None)
    assert refused(given(compound=GARDEN, seals=seals), seal_cmd(ExtendSeal, until=day(4))).reason == "not_later"
    assert refused(given(compound=GARDEN, seals=seals), seal_cmd(ExtendSeal, until=day(0))).reason == "past_day"
    assert refused(given(compound=GARDEN, seals=seals), seal_cmd(ExtendSeal, building="b1", until=day(8))).reason \
        == "not_sealed"
    err = refused(given(compound=GARDEN, seals=seals), seal_cmd(ExtendSeal, building="b9", until=day(8)))
    assert (err.code, err.field) == ("not_found", "building")
