"""The reactions to quarantine events, pure: which commands, with which deterministic ids."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.logistics.commands import StartDailySupply, StopDailySupply, validate
from services.logistics.reactions import ACTOR, react_to_case, seal_cause, seal_commands
from shared import envelope
from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    CheckinMissed,
    SealLifted,
)

CST = timezone(timedelta(hours=8))
AT = datetime(2022, 4, 2, 9, 0, tzinfo=CST)
COMMUNITY = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-na"


def raw(event, event_id="3f0c6a4e-0000-4000-8000-000000000001"):
    env = envelope.wrap(event, stream_id="case:c-1", stream_version=1, occurred_at=AT, actor=STAFF,
                        correlation_id="corr-1", event_id=event_id)
    return envelope.decode_raw(envelope.encode(env))


def opened(kind="home", household: str | None = "h-1") -> CaseOpened:
    return CaseOpened(community=COMMUNITY, case="c-1", resident="r-1", household=household,
                      compound="nangong-1" if household else None, building="b1" if household else None,
                      kind=kind, reason="arrival", starts_on=AT.date(), ends_on=AT.date() + timedelta(days=13),
                      opened_at=AT, opened_by=STAFF)


def test_a_home_quarantine_starts_the_daily_supply_of_the_household():
    [(name, cmd)] = react_to_case(raw(opened()), opened())
    assert name == "start_daily_supply" and isinstance(cmd, StartDailySupply)
    assert (cmd.household, cmd.cause, cmd.community, cmd.compound, cmd.building) == (
        "h-1", "case:c-1", COMMUNITY, "nangong-1", "b1")
    assert cmd.actor == ACTOR == "system:daily-supply"
    assert cmd.occurred_at == AT and cmd.causation_id == raw(opened()).event_id
    assert cmd.correlation_id == "corr-1"
    validate(cmd)  # what a reaction sends passes the same checks as the wire


def test_the_same_event_gives_the_same_command_id_and_another_event_another():
    first = react_to_case(raw(opened()), opened())[0][1].command_id
    assert react_to_case(raw(opened()), opened())[0][1].command_id == first
    assert react_to_case(raw(opened(), event_id="3f0c6a4e-0000-4000-8000-000000000002"),
                         opened())[0][1].command_id != first


@pytest.mark.parametrize("kind", ["centralized", "monitoring"])
def test_a_case_away_from_home_starts_nothing(kind):
    assert react_to_case(raw(opened(kind)), opened(kind)) == []


def test_a_case_without_a_known_household_names_the_resident():
    [(_, cmd)] = react_to_case(raw(opened(household=None)), opened(household=None))
    assert cmd.household is None and cmd.resident == "r-1"
    validate(cmd)


@pytest.mark.parametrize("event", [
    CaseClosed(community=COMMUNITY, case="c-1", resident="r-1", household="h-1", on=AT.date(), closed_at=AT,
               closed_by=STAFF),
    CaseReleased(community=COMMUNITY, case="c-1", resident="r-1", household="h-1", on=AT.date(),
                 monitoring_until=AT.date() + timedelta(days=7), released_at=AT, released_by=STAFF),
    CaseTransferred(community=COMMUNITY, case="c-1", resident="r-1", household="h-1", to="hospital",
                    transferred_at=AT, transferred_by=STAFF),
])
def test_the_end_of_home_quarantine_stops_the_daily_supply(event):
    [(name, cmd)] = react_to_case(raw(event), event)
    assert name == "stop_daily_supply" and isinstance(cmd, StopDailySupply)
    assert (cmd.household, cmd.cause) == ("h-1", "case:c-1")
    validate(cmd)


def test_other_quarantine_events_start_nothing():
    missed = CheckinMissed(community=COMMUNITY, case="c-1", resident="r-1", on=AT.date(), missed_at=AT,
                           missed_by=STAFF)
    assert react_to_case(raw(missed), missed) == []


def sealed(building="b2") -> AreaSealed:
    return AreaSealed(community=COMMUNITY, compound="nangong-1", building=building, sealed_at=AT, sealed_by=STAFF)


def test_a_seal_starts_a_daily_supply_per_household_the_most_vulnerable_first():
    households = [("h-a", []), ("h-b", ["chronic_illness"]), ("h-c", ["elderly_alone"]),
                  ("h-d", ["limited_mobility", "medical_device"]), ("h-e", [])]
    commands = seal_commands(raw(sealed()), sealed(), households)
    assert [cmd.household for _, cmd in commands] == ["h-c", "h-d", "h-b", "h-a", "h-e"]
    assert {name for name, _ in commands} == {"start_daily_supply"}
    assert {cmd.cause for _, cmd in commands} == {"seal:nangong-1:b2"}
    ids = [cmd.command_id for _, cmd in commands]
    assert len(set(ids)) == 5 and ids == [c.command_id for _, c in seal_commands(raw(sealed()), sealed(),
                                                                                  list(reversed(households)))]
    for _, cmd in commands:
        validate(cmd)


def test_lifting_a_seal_stops_each_households_supply_for_that_seal_only():
    lifted = SealLifted(community=COMMUNITY, compound="nangong-1", building=None, lifted_at=AT, lifted_by=STAFF)
    commands = seal_commands(raw(lifted), lifted, [("h-a", []), ("h-b", [])])
    assert [(name, cmd.household, cmd.cause) for name, cmd in commands] == [
        ("stop_daily_supply", "h-a", "seal:nangong-1"), ("stop_daily_supply", "h-b", "seal:nangong-1")]


def test_a_seal_of_an_empty_area_sends_nothing():
    assert seal_commands(raw(sealed()), sealed(), []) == []
    assert seal_cause(sealed(None)) == "seal:nangong-1"
