"""The registry's retention rule, pure: apply_retention erases exactly the residents listed who
moved out before the cut-off, in its community, with no quarantine case open and not erased yet,
and counts them in one RetentionApplied (none when nobody was due)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.registry.commands import ApplyRetention
from services.registry.decide import Facts, decide
from services.registry.domain import Resident, evolve
from shared.contracts.registry import ResidentErased, ResidentMovedOut, RetentionApplied

HERE, THERE = "changning.chengjiaqiao.nangong", "changning.chengjiaqiao.tianshan"
NOW = datetime(2026, 7, 1, 9, tzinfo=timezone.utc)
BEFORE = NOW - timedelta(days=180)


def resident(rid: str, moved_out_days_ago: int | None, community: str = HERE, erased: bool = False) -> Resident:
    state = Resident(community=community, compound="c1", building="b1", household="h1", resident=rid)
    if moved_out_days_ago is not None:
        state = evolve(state, ResidentMovedOut(community=community, resident=rid, household="h1", compound="c1",
                                               building="b1", moved_out_at=NOW - timedelta(days=moved_out_days_ago),
                                               moved_out_by="staff:li-wei"))
    return replace(state, erased=erased)


def apply(residents: dict, open_cases=frozenset()) -> list:
    cmd = ApplyRetention(command_id="r-1", actor="system:retention", occurred_at=NOW, community=HERE,
                         before=BEFORE, residents=list(residents))
    return decide(Facts(residents=residents, open_cases=frozenset(open_cases)), cmd)


def test_moving_out_records_when_the_retention_period_starts():
    assert resident("r-1", 3).moved_out_at == NOW - timedelta(days=3)


def test_exactly_the_residents_due_are_erased_and_counted():
    # given residents: due, moved out recently, never moved out, with an open case, erased already,
    # of another community, and one the registry does not know
    residents = {"due": resident("due", 181), "recent": resident("recent", 179), "home": resident("home", None),
                 "open": resident("open", 300), "erased": resident("erased", 400, erased=True),
                 "there": resident("there", 200, community=THERE), "unknown": None}
    # when retention applies
    events = apply(residents, open_cases={"open"})
    # then only the due one is erased, on a retention basis, and one event counts it
    [erased, applied] = events
    assert isinstance(erased, ResidentErased) and erased.resident == "due"
    assert erased.legal_basis.startswith("retention: ") and erased.erased_by == "system:retention"
    assert isinstance(applied, RetentionApplied)
    assert (applied.community, applied.kind, applied.before, applied.count) == (HERE, "residents", BEFORE, 1)


def test_nobody_due_records_nothing():
    assert apply({"recent": resident("recent", 10)}) == []
