"""The registry's part of the committee's evening (issue 17): returnees called on the phone (电话排查),
neighbours' tip-offs recorded and followed up, a few residents' vulnerabilities updated after the
door-to-door visits. Played last, after the deliveries: a flag updated tonight changes no delivery
of the day the book has already counted."""
from __future__ import annotations

from itertools import cycle
from typing import TYPE_CHECKING

from services.demo.plan import at, spread

if TYPE_CHECKING:
    from services.demo.day import Demo

#: How the calls of the evening went, in turn: most returnees answer at home.
OUTCOMES = ("reached_at_home", "reached_at_home", "reached_at_home", "no_answer", "reached_elsewhere",
            "reached_at_home", "wrong_number", "reached_at_home")
#: Residents per committee whose flags the visits updated (found living alone with a chronic illness).
UPDATES_PER_COMMITTEE = 2


def _grid(community: str, n: int) -> str:
    return f"staff:{community.rsplit('.', 1)[1]}-grid-{n % 8 + 1}"


async def evening(demo: Demo) -> None:
    await calls(demo)
    await tip_offs(demo)
    await updates(demo)


async def calls(demo: Demo) -> None:
    """Every other returnee registered today is called, by arrival."""
    called = [a for a in sorted(demo.plan.arrivals, key=lambda a: a.id) if a.id in demo.book.arrivals][::2]

    def booked(call, reply) -> None:
        data = reply["events"][0]["data"]
        demo.book.called(data["community"], data["outcome"])

    await demo.run("returnees called (phone screening)", [
        demo.call("registry", "record_call", t, _grid(a.compound.community, i), a.id, resident=a.resident.id,
                  arrival=a.id, outcome=outcome)
        for i, (a, t, outcome) in enumerate(zip(called, spread(len(called), at("20:30"), at("21:30")),
                                                cycle(OUTCOMES)))], on_ok=booked)


async def tip_offs(demo: Demo) -> None:
    """Three tip-offs a committee: a household not staying home (confirmed at the door), a gathering
    in a building (nobody there), someone back who did not register (still open)."""
    first = {}
    for h in demo.street.households:
        first.setdefault(h.compound.community, h)
    planned = []
    for community, h in sorted(first.items()):
        c = h.compound
        planned += [(dict(community=community, compound=c.id, household=h.id, kind="not_staying_home",
                          note="邻居反映该户居家隔离期间白天外出"), "confirmed"),
                    (dict(community=community, compound=c.id, building=h.building, kind="gathering",
                          note="楼道里有人聚集打牌"), "unfounded"),
                    (dict(community=community, compound=c.id, kind="unregistered_arrival"), None)]
    recorded: dict[tuple[str, str], str] = {}  # (community, kind) -> the tip-off's id

    def booked(call, reply) -> None:
        data = reply["events"][0]["data"]
        demo.book.tipped(data["community"], data["tip_off"])
        recorded[data["community"], data["kind"]] = data["tip_off"]

    await demo.run("tip-offs from neighbours", [
        demo.call("registry", "record_tip_off", at("21:00"), demo.office(body["community"]),
                  f"{body['community']}-{body['kind']}", **body)
        for body, _ in planned], on_ok=booked)
    await demo.run("tip-offs followed up", [
        demo.call("registry", "follow_up_tip_off", at("21:40"), _grid(body["community"], n),
                  f"{body['community']}-{body['kind']}", tip_off=recorded[body["community"], body["kind"]],
                  outcome=outcome)
        for n, (body, outcome) in enumerate(planned)
        if outcome is not None and (body["community"], body["kind"]) in recorded],
        on_ok=lambda c, r: demo.book.followed_up(r["events"][0]["data"]["community"], c.body["tip_off"]))


async def updates(demo: Demo) -> None:
    chosen: dict[str, list] = {}
    for r in sorted(demo.street.residents, key=lambda r: r.id):
        community = demo.book.residents.get(r.id)
        if community is not None and not r.vulnerabilities and len(chosen.setdefault(community, [])) < \
                UPDATES_PER_COMMITTEE:
            chosen[community].append(r)
    await demo.run("vulnerabilities updated after visits", [
        demo.call("registry", "update_resident", at("21:50"), demo.office(community), r.id, resident=r.id,
                  vulnerabilities=["elderly_alone", "chronic_illness"])
        for community, residents in sorted(chosen.items()) for r in residents])
