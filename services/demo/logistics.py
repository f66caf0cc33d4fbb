"""Logistics' part of the demo's day (issue 17): volunteers in teams, group orders from suppliers,
door-to-door visits to the vulnerable, and the hours of it all.

- 13:00: the gate volunteers join their committee's teams: the morning shift's are cadres sent down
  from district agencies (下沉干部), the afternoon's a party branch's members (党支部), as are the
  volunteers who visit the vulnerable and hand out group orders. So every gate shift's hours, which
  logistics records from the checkpoint's ShiftEnded, count for a team.
- 13:00-16:00: each committee orders from a supplier for its smallest compound (all of it: handed
  out building by building, done) and for the first building of its largest (left at the gate,
  not yet handed out); every household with a vulnerable resident gets a door-to-door visit (every
  tenth one nobody answers); the visitors and the hand-out volunteers record their hours.

Everything is derived from the street (no draw of its own) and the command ids from the seed's tag,
so the same seed replays the stored replies. The book counts what the board must show: group orders
open and delivered today, and each team's minutes of the day.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from services.demo.plan import DAY, at, spread
from services.demo.street import Compound

if TYPE_CHECKING:
    from services.demo.day import Demo

SUPPLIERS = ("盒马鲜生", "叮咚买菜", "每日优鲜")
#: A visit takes a quarter of an hour; one volunteer makes at most 32 in a day (8 hours).
VISIT_MINUTES, VISITS_PER_VOLUNTEER = 15, 32
#: Two volunteers hand out each committee's orders, an hour and a half each.
HAND_OUT_VOLUNTEERS, HAND_OUT_HOURS = 2, 1.5


def short(community: str) -> str:
    return community.rsplit(".", 1)[1]


def teams(committee: str) -> dict[str, tuple[str, str]]:
    """label -> (team, unit kind) of a committee's volunteers."""
    return {"am": (f"{committee}-cadres", "sent_down_cadre"), "pm": (f"{committee}-party-branch", "party_branch")}


async def play(demo: Demo) -> None:
    await register(demo)
    await group_orders(demo)
    await visits(demo)


def _people(demo: Demo) -> list[tuple[str, str, str, str]]:
    """Every volunteer of the phase: (community, volunteer, team, unit kind)."""
    out = []
    for committee in demo.street.committees:
        community = demo.street.community(committee)
        for s in demo.plan.shifts:
            if s.compound.community == community:
                out.append((community, s.staff, *teams(committee)["am" if s.start.hour < 14 else "pm"]))
        for volunteer in _visitors(demo, community) + _hand_out(committee):
            out.append((community, volunteer, *teams(committee)["pm"]))
    return list(dict.fromkeys(out))


async def register(demo: Demo) -> None:
    people = _people(demo)
    await demo.run("volunteers join their teams", [
        demo.call("logistics", "register_volunteer", t, demo.office(c), v, volunteer=v, community=c, team=team,
                  unit_kind=kind)
        for (c, v, team, kind), t in zip(people, spread(len(people), at("13:00"), at("13:05")))])
    # The gate shifts' hours count for the team the volunteer is in (the reaction reads it then).
    for s in demo.plan.shifts:
        team = teams(short(s.compound.community))["am" if s.start.hour < 14 else "pm"][0]
        demo.book.volunteer_minutes[s.compound.community][team] += round((s.end - s.start).total_seconds() / 60)


def _orders(demo: Demo) -> list[tuple[str, Compound, list[str], bool]]:
    """Per committee: (order, compound, buildings, handed out to all) for its smallest compound
    (all of it) and its largest compound's first building (left at the gate)."""
    out = []
    for committee, compounds in demo.street.committees.items():
        small, large = min(compounds, key=lambda c: len(c.households)), max(compounds, key=lambda c: len(c.households))
        out.append((f"{committee}-{demo.street.tag}-go1", small, small.buildings, True))
        out.append((f"{committee}-{demo.street.tag}-go2", large, large.buildings[:1], False))
    return out


def _households(c: Compound, buildings: list[str]) -> dict[str, int]:
    return {b: n for b in buildings if (n := sum(1 for h in c.households if h.building == b))}


async def group_orders(demo: Demo) -> None:
    orders = [(o, c, _households(c, bs), done) for o, c, bs, done in _orders(demo)]
    orders = [o for o in orders if o[2]]
    times = spread(len(orders), at("13:10"), at("13:30"))
    await demo.run("group orders placed (团购)", [
        demo.call("logistics", "place_group_order", t, demo.office(c.community), o, community=c.community,
                  compound=c.id, supplier=SUPPLIERS[i % len(SUPPLIERS)], order=o, households=sum(per.values()),
                  items=[{"item": "vegetable-box", "qty": sum(per.values())}])
        for i, ((o, c, per, _), t) in enumerate(zip(orders, times))],
        on_ok=lambda call, r: demo.book.group_order(call.body["community"], call.body["order"]))
    await demo.run("group orders left at the gate", [
        demo.call("logistics", "record_group_order_delivered", t, demo.office(c.community), o, order=o,
                  gate=c.open_gates[0])
        for (o, c, _, _), t in zip(orders, spread(len(orders), at("14:00"), at("14:30")))],
        on_ok=lambda call, r: demo.book.group_order_delivered(call.body["order"]))
    hand_outs = [(o, c, b, n) for o, c, per, done in orders if done for b, n in per.items()]
    await demo.run("group orders handed out", [
        demo.call("logistics", "hand_out_group_order", t, demo.office(c.community), f"{o}-{b}", order=o,
                  building=b, households=n)
        for (o, c, b, n), t in zip(hand_outs, spread(len(hand_outs), at("14:30"), at("15:30")))],
        on_ok=lambda call, r: demo.book.group_order_handed_out(call.body["order"], r["events"][0]["data"]["complete"]))
    await _hours(demo, [(demo.street.community(k), v, "delivery", HAND_OUT_HOURS)
                        for k in demo.street.committees for v in _hand_out(k)], "hand-out hours recorded")


def _hand_out(committee: str) -> list[str]:
    return [f"volunteer:{committee}-hand-out-{n}" for n in range(1, HAND_OUT_VOLUNTEERS + 1)]


def _vulnerable(demo: Demo, community: str) -> list:
    return [h for c in demo.street.compounds if c.community == community for h in c.households if h.vulnerable]


def _visitors(demo: Demo, community: str) -> list[str]:
    n = math.ceil(len(_vulnerable(demo, community)) / VISITS_PER_VOLUNTEER)
    return [f"volunteer:{short(community)}-visit-{i}" for i in range(1, n + 1)]


async def visits(demo: Demo) -> None:
    calls, hours = [], []
    for committee in demo.street.committees:
        community = demo.street.community(committee)
        homes, visitors = _vulnerable(demo, community), _visitors(demo, community)
        for i, (h, t) in enumerate(zip(homes, spread(len(homes), at("15:00"), at("17:00")))):
            v = visitors[i // VISITS_PER_VOLUNTEER]
            calls.append(demo.call("logistics", "record_visit", t, v, h.id, household=h.id, volunteer=v,
                                   outcome="no_answer" if i % 10 == 9 else "well"))
        for j, v in enumerate(visitors):
            made = len(homes[j * VISITS_PER_VOLUNTEER:(j + 1) * VISITS_PER_VOLUNTEER])
            hours.append((community, v, "door_to_door", made * VISIT_MINUTES / 60))
    await demo.run("door-to-door visits to the vulnerable", calls,
                   note=lambda: f"{sum(1 for c in calls if c.body['outcome'] == 'no_answer')} not answered")
    await _hours(demo, hours, "visiting hours recorded")


async def _hours(demo: Demo, worked: list[tuple[str, str, str, float]], title: str) -> None:
    def booked(call, reply) -> None:
        data = reply["events"][0]["data"]
        demo.book.volunteer_minutes[call.body["community"]][data["team"]] += round(data["hours"] * 60)

    await demo.run(title, [
        demo.call("logistics", "record_volunteer_hours", at("17:30"), demo.office(c), f"{v}-{kind}", volunteer=v,
                  community=c, on=DAY.isoformat(), kind=kind, hours=h)
        for c, v, kind, h in worked], on_ok=booked)
