"""The committee's quarantine work lists: what staff must do next, a page at a time.

- ``quarantine.due_for_release`` {community, on?, limit?, after?}: open cases (hospital aside)
  whose current stage ends on or before the day, most overdue first. Release stays a staff
  decision (``release_case``), unless the auto-release policy took a case first; the list makes it
  impossible to forget one.
- ``quarantine.checkins_due`` {community, on?, limit?, after?}: open cases that owe a check-in on
  the day and have neither checked in nor been marked missed: whom to call before the evening sweep.

"The day" is today in ``CORDON_TIMEZONE`` unless asked; the cases are as they are now. Masked
names only (the local directory's, as ``quarantine.cases``). Read from ``quarantine.cases`` and
the check-in days' streams; nothing is written. The host has checked that the caller reads the
community.
"""
from __future__ import annotations

from datetime import date
from functools import partial

from services.quarantine.config import Config
from services.quarantine.queries import CASE_COLUMNS, FROM
from shared.contracts import queries
from shared.errors import Invalid
from shared.identity import Identity
from shared.subjects import check_community, check_slug

# Hospital cases are the hospital's; a case whose stage ended is due, oldest end first. The page
# key is (ends_on, case id): the order staff work in, stable while cases are released.
DUE_FOR_RELEASE = f"""
SELECT {CASE_COLUMNS}, $2::date - c.ends_on AS days_overdue FROM {FROM}
WHERE c.community = $1 AND c.open AND c.stage <> 'hospital' AND c.ends_on <= $2
  AND (c.ends_on, c.case_id) > ($3::date, $4)
ORDER BY c.ends_on, c.case_id
LIMIT $5
"""

# The evening sweep's cases (tables.DUE_WITHOUT_CHECKIN) of one community, by what the day's own
# stream holds: a check-in or a missed mark there, on any day asked, takes the case off the list.
CHECKINS_DUE = f"""
SELECT {CASE_COLUMNS} FROM {FROM}
WHERE c.community = $1 AND c.open AND c.stage <> 'hospital' AND c.case_id > $3
  AND c.due_from <= $2 AND (c.stage <> 'monitoring' OR c.ends_on >= $2)
  AND NOT EXISTS (SELECT 1 FROM quarantine.events e
                  WHERE e.stream_id = 'checkin:' || c.case_id || ':' || to_char($2::date, 'YYYY-MM-DD'))
ORDER BY c.case_id
LIMIT $4
"""


async def due_for_release(host, payload: bytes, identity: Identity | None, *, config: Config) -> dict:
    """``quarantine.due_for_release``: a page of cases due, ``next`` the cursor of the following one."""
    q = queries.decode("quarantine.due_for_release", payload)
    check_community(q.community)
    on = q.on or config.day(host.clock())
    after_day, after_case = _release_cursor(q.after)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(DUE_FOR_RELEASE, q.community, on, after_day, after_case, q.limit + 1)
    page = [dict(r) for r in rows[:q.limit]]
    last = page[-1] if len(rows) > q.limit else None
    return {"ok": True, "community": q.community, "on": on, "cases": page,
            "next": f"{last['ends_on'].isoformat()}:{last['case']}" if last else None}


async def checkins_due(host, payload: bytes, identity: Identity | None, *, config: Config) -> dict:
    """``quarantine.checkins_due``: a page of the cases still owing the day's check-in."""
    q = queries.decode("quarantine.checkins_due", payload)
    check_community(q.community)
    if q.after != "":
        check_slug(q.after, "after")
    on = q.on or config.day(host.clock())
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(CHECKINS_DUE, q.community, on, q.after, q.limit + 1)
    page = [dict(r) for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "on": on, "due_by": config.deadline(on), "cases": page,
            "next": page[-1]["case"] if len(rows) > q.limit else None}


def _release_cursor(after: str) -> tuple[date, str]:
    """The (ends_on, case) a due-for-release page starts after: ``YYYY-MM-DD:case``, as ``next`` gives."""
    if after == "":
        return date.min, ""
    day, _, case = after.partition(":")
    try:
        return date.fromisoformat(day), check_slug(case, "after")
    except (ValueError, Invalid):
        raise Invalid(f"after {after!r} is not a page cursor: pass the next of the previous page "
                      "(YYYY-MM-DD:case)", field="after") from None


def queries_of(config: Config) -> dict:
    """The work-list queries, answering "today" on the city's calendar of ``config``."""
    return {"quarantine.due_for_release": partial(due_for_release, config=config),
            "quarantine.checkins_due": partial(checkins_due, config=config)}
