"""The afternoon and evening of the demo's day: supply requests, gate traffic, deliveries (one door
nobody answers), quarantine check-ins (one to hospital), vouchers redeemed, missed check-ins, the
evening's arrivals and the end of the duty shifts.

Deliveries and check-ins need ids the services created by themselves (the daily food requests of
confined households, the cases opened by the arrivals policy): the demo reads them as a volunteer's
or a grid worker's phone would, with the queries ``logistics.requests`` and ``quarantine.cases``.
"""
from __future__ import annotations

import zlib
from collections import Counter
from typing import TYPE_CHECKING

from services.demo.client import qry
from services.demo.morning import arrival_call, book_arrival
from services.demo.plan import DAY, at, spread

if TYPE_CHECKING:
    from services.demo.day import Demo

VOLUNTEERS = 30


async def requests(demo: Demo) -> None:
    reqs = demo.plan.requests
    calls = [demo.call("logistics", "request_supplies", t, demo.office(r.compound.community), r.id,
                       community=r.compound.community, household=r.household.id, kind=r.kind,
                       items=[{"item": k, "qty": n} for k, n in r.items.items()], request=r.id,
                       **({"note": r.note} if r.note else {}))
             for r, t in zip(reqs, spread(len(reqs), at("13:00"), at("14:00")))]
    kinds = Counter(r.kind for r in reqs)
    await demo.run("supplies requested", calls,
                   on_ok=lambda c, rep: demo.book.requested(c.body["community"], c.body["request"]),
                   note=lambda: ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))


async def gate_traffic(demo: Demo) -> None:
    todo = [p for p in demo.plan.passages if p.pass_of is None or p.pass_of in demo.passes]
    calls = [demo.passage_call(p, i) for i, p in enumerate(todo)]
    by_id = {c.body["passage"]: p for c, p in zip(calls, todo)}

    def note() -> str:
        d = demo.played.decisions
        denied = {k: n for k, n in d.items() if k != "allowed"}
        return (f"allowed {d['allowed']:,}, denied {sum(denied.values())} ("
                + ", ".join(f"{k} {n}" for k, n in sorted(denied.items())) + ")")

    await demo.run("gate traffic (13:00-21:30)", calls,
                   on_reply=lambda c, rep: demo.decided(by_id[c.body["passage"]], c, rep), note=note)
    if demo.played.unintended:
        demo.played.notes.append(f"{len(demo.played.unintended)} gate decisions differ from the plan, e.g. "
                                 f"{demo.played.unintended[0]}")


async def _open_requests(demo: Demo, community: str) -> list[dict]:
    reply = await demo.api.send(qry("logistics.requests", community=community, limit=1000))
    if not reply.get("ok"):
        raise RuntimeError(f"logistics.requests {community}: {reply.get('error')}")
    return [dict(r, community=community) for r in reply["requests"] if r["status"] == "open"]


def _items(request: dict) -> dict[str, int]:
    return {line["item"]: line["qty"] for line in request["items"]}


async def _to_deliver(demo: Demo, own: set[str]) -> list[dict]:
    """The open requests to deliver: the street's own, and the day's food of every confined
    household (raised by the daily-supply reaction; its scheduler may have raised one for the
    real today as well: not the demo's day, left alone)."""
    todo: list[dict] = []
    for community in demo.book.communities():
        expected = {key.split(":", 1)[1] for key, c in demo.book.requests.items()
                    if key.startswith("daily:") and c == community}
        listed = await _open_requests(demo, community)
        daily = [r for r in listed if r["request"] not in own and r["household"] in expected
                 and r.get("daily_on") == DAY.isoformat()]
        for r in daily:
            demo.book.daily_request_seen(r["household"], r["request"])
        if len(daily) != len(expected):
            demo.played.notes.append(f"{community}: {len(daily)} daily food requests found, {len(expected)} expected")
        todo += [r for r in listed if r["request"] in own] + daily
    return todo


async def deliveries(demo: Demo) -> None:
    own = {r.id: r for r in demo.plan.requests}
    todo = await _to_deliver(demo, set(own))
    by_id = {r["request"]: r for r in todo}
    volunteers = [f"vol-{n:02d}" for n in range(1, VOLUNTEERS + 1)]
    assign = [demo.call("logistics", "assign_delivery", t, demo.office(r["community"]), r["request"],
                        request=r["request"], volunteer=volunteers[i % len(volunteers)])
              for i, (r, t) in enumerate(zip(todo, spread(len(todo), at("14:00"), at("15:00"))))]

    def assigned(call, reply) -> None:
        r = by_id[call.body["request"]]
        demo.book.assigned(r["community"], _items(r))

    await demo.run("deliveries assigned", assign, on_ok=assigned,
                   note=lambda: f"{len(todo) - len(own)} daily food for confined households, the rest requested")
    unanswered = {rid for rid, r in own.items() if r.no_answer}

    def recorded(call, reply) -> None:
        r = by_id[call.body["request"]]
        if call.body["outcome"] == "delivered":
            demo.book.delivered(r["request"])
        else:
            demo.book.not_answered(r["community"], r["household"], _items(r), own[r["request"]].household.vulnerable)

    record = [demo.call("logistics", "record_delivery", t, f"volunteer:{c.body['volunteer']}", c.body["request"],
                        request=c.body["request"],
                        outcome="no_answer" if c.body["request"] in unanswered else "delivered")
              for c, t in zip(assign, spread(len(assign), at("15:00"), at("17:00")))]
    await demo.run("deliveries left at the door", record, on_ok=recorded,
                   note=lambda: "no answer at one elderly resident's door" if unanswered else "")


async def _home_cases(demo: Demo, community: str) -> dict[str, dict]:
    """The street's open home-quarantine cases of a community, by resident, read back (cases opened
    by the arrivals reaction have ids the service made). Home cases only: the service's scheduler
    closes monitoring cases whose days have passed by its own clock, years after the demo's day."""
    reply = await demo.api.send(qry("quarantine.cases", community=community, status="open", limit=5000))
    if not reply.get("ok"):
        raise RuntimeError(f"quarantine.cases {community}: {reply.get('error')}")
    cases = {c["resident"]: c for c in reply["cases"] if c["resident"] in demo.book.cases and c["kind"] == "home"}
    expected = {r for r, case in demo.book.cases.items() if case.community == community and case.kind == "home"}
    if set(cases) != expected:
        demo.played.notes.append(f"{community}: {len(cases)} open home cases listed, {len(expected)} expected")
    for resident, case in cases.items():
        demo.book.cases[resident].id = case["case"]
    return cases


def _temperature(resident: str) -> float:
    return round(36.2 + zlib.crc32(resident.encode()) % 8 / 10, 1)  # 36.2-36.9, the same every run


async def checkins(demo: Demo) -> None:
    plan, book = demo.plan, demo.book
    calls, transfer = [], None
    for community in book.communities():
        cases = await _home_cases(demo, community)
        todo = sorted(r for r in cases if r not in plan.checkin_skipped)
        for resident, t in zip(todo, spread(len(todo), at("15:00"), at("17:30"))):
            sick = resident == plan.transfer
            calls.append(demo.call("quarantine", "record_checkin", t, f"resident:{resident}", f"{resident}-{DAY}",
                                   case=cases[resident]["case"], on=DAY.isoformat(),
                                   temperature_c=38.4 if sick else _temperature(resident),
                                   symptoms=["fever", "cough"] if sick else []))
            if sick:
                transfer = demo.call("quarantine", "transfer_case", at("17:45"), demo.office(community),
                                     cases[resident]["case"], case=cases[resident]["case"], to="hospital")
    await demo.run("quarantine check-ins", calls, note=lambda: f"{len(plan.checkin_skipped)} did not report")
    if transfer is not None:
        await demo.run("a case sent to hospital", [transfer],
                       on_ok=lambda c, r: book.transferred(plan.transfer, "hospital"))


async def redeem(demo: Demo) -> None:
    todo = [(m, number) for m, number in demo.vouchers if m.redeem]
    masks = {number: m for m, number in todo}

    def redeemed(call, reply) -> None:
        m = masks[call.body["voucher"]]
        demo.book.redeemed(m.compound.community, m.qty)

    await demo.run("mask vouchers redeemed", [
        demo.call("logistics", "redeem_voucher", t, demo.office(m.compound.community), number, voucher=number)
        for (m, number), t in zip(todo, spread(len(todo), at("16:00"), at("18:00")))], on_ok=redeemed)


async def missed_checkins(demo: Demo) -> None:
    """After the check-in hour (18:00) the quarantine service's scheduler records who did not
    report; the demo's clock is not the service's, so the demo sends that command itself."""
    calls, community_of = [], {}
    for community in demo.book.communities():
        cases = sorted(case.id for r, case in demo.book.cases.items()
                       if r in demo.plan.checkin_skipped and case.community == community and case.id)
        if cases:
            calls.append(demo.call("quarantine", "record_missed_checkins", at("18:30"), "system:demo-clock",
                                   f"{community}-{DAY}", on=DAY.isoformat(), cases=cases))
            community_of[calls[-1].body["command_id"]] = community
    await demo.run("missed check-ins recorded (18:30)", calls,
                   on_ok=lambda c, r: demo.book.missed(community_of[c.body["command_id"]], r["missed"]))


async def late_arrivals(demo: Demo) -> None:
    todo = [a for a in demo.plan.arrivals if a.category == "pending"]
    by_id = {a.id: a for a in todo}
    await demo.run("evening arrivals (verified tomorrow)", [
        arrival_call(demo, a, t) for a, t in zip(todo, spread(len(todo), at("19:00"), at("20:00")))],
        on_ok=lambda c, r: book_arrival(demo, by_id[c.body["arrival"]]))


async def shifts_end(demo: Demo) -> None:
    shifts = demo.plan.shifts

    def call(s, name: str, when):
        return demo.call("checkpoint", name, when, s.staff, f"{s.id}-{name}", community=s.compound.community,
                         compound=s.compound.id, gate=s.gate, staff=s.staff, shift=s.id)

    morning = [s for s in shifts if s.start.hour < 14]
    evening = [s for s in shifts if s.start.hour >= 14]
    await demo.run("duty shifts: morning off", [call(s, "end_shift", s.end) for s in morning])
    await demo.run("duty shifts: evening shift on duty", [call(s, "start_shift", s.start) for s in evening])
    await demo.run("duty shifts: evening off", [call(s, "end_shift", s.end) for s in evening])
