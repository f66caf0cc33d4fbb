"""The committee's quarantine work lists in the demo's day (issue 17), read as a grid worker's phone
would once the afternoon's check-ins are in (17:30):

- ``quarantine.checkins_due`` on the day: whose check-in is still missing before the evening
  sweep. The home cases on it must be exactly those the plan has not report (the ones the
  evening's ``record_missed_checkins`` then records); centralized and monitoring cases the demo
  does not check in are counted.
- ``quarantine.due_for_release`` on the day the day's quarantines end (13 days on): every home and
  centralized case the day opened, none overdue; the one in hospital is not on it.

Read only: no command, no board figure (the lists are answered from the quarantine's state, not by
the views). A list that differs from the book is a note, as every other difference of the demo.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from services.demo.client import qry
from services.demo.plan import DAY

if TYPE_CHECKING:
    from services.demo.day import Demo

QUARANTINE_DAYS = 14  # the service's default policy (CORDON_QUARANTINE_DAYS), which the demo runs


async def work_lists(demo: Demo) -> None:
    owing: Counter = Counter()
    ends_on = DAY + timedelta(days=QUARANTINE_DAYS - 1)
    due = 0
    for community in demo.book.communities():
        ours = {r: case for r, case in demo.book.cases.items() if case.community == community}
        listed = [c for c in await _pages(demo, "quarantine.checkins_due", community, DAY) if c["resident"] in ours]
        owing.update(c["stage"] for c in listed)
        _compare(demo, community, "checkins_due", {c["resident"] for c in listed if c["stage"] == "home"},
                 {r for r, case in ours.items() if case.kind == "home" and r in demo.plan.checkin_skipped})
        listed = [c for c in await _pages(demo, "quarantine.due_for_release", community, ends_on)
                  if c["resident"] in ours and c["days_overdue"] == 0]  # not the monitoring, ended before
        due += len(listed)
        _compare(demo, community, f"due_for_release on {ends_on}", {c["resident"] for c in listed},
                 {r for r, case in ours.items() if case.kind in ("home", "centralized")})
    demo.progress.line(f"  {'work lists (17:30)':<34} check-ins not yet recorded {sum(owing.values())} ("
                       + ", ".join(f"{k} {n}" for k, n in sorted(owing.items()))
                       + f"); due for release on {ends_on}: {due}")


async def _pages(demo: Demo, view: str, community: str, on) -> list[dict]:
    rows, after = [], ""
    while True:
        reply = await demo.api.send(qry(view, community=community, on=on.isoformat(), limit=5000, after=after))
        if not reply.get("ok"):
            raise RuntimeError(f"{view} {community}: {reply.get('error')}")
        rows += reply["cases"]
        if reply["next"] is None:
            return rows
        after = reply["next"]


def _compare(demo: Demo, community: str, what: str, listed: set[str], expected: set[str]) -> None:
    if listed != expected:
        demo.played.notes.append(f"{community}: {what} lists {len(listed)} of the day's cases, "
                                 f"{len(expected)} expected ({len(listed - expected)} more, "
                                 f"{len(expected - listed)} missing)")
