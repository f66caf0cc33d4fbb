"""The morning of the demo's day: gates and control levels, passes, stock, arrivals registered and
verified door to door, close contacts, mask reservations, a sealed building."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from services.demo.plan import DAY, at, spread

if TYPE_CHECKING:
    from services.demo.day import Demo


async def gates(demo: Demo) -> None:
    calls = []
    for c in demo.street.compounds:
        office = demo.office(c.community)
        if c.plan.level != "open":
            calls.append(demo.call("checkpoint", "set_control_level", at("06:00"), office, c.id,
                                   community=c.community, compound=c.id, level=c.plan.level))
        for gate in c.gates[len(c.open_gates):]:  # gates merged away: closed for the day
            calls.append(demo.call("checkpoint", "set_gate", at("06:00"), office, f"{c.id}-{gate}",
                                   community=c.community, compound=c.id, gate=gate, open=False))
    calls += [demo.call("checkpoint", "start_shift", s.start, s.staff, f"{s.id}-start",
                        community=s.compound.community, compound=s.compound.id, gate=s.gate, staff=s.staff, shift=s.id)
              for s in demo.plan.shifts if s.start.hour < 14]
    await demo.run("gates set, morning shifts on duty", calls)


async def passes(demo: Demo) -> None:
    cs = demo.street.compounds

    def issued(call, reply) -> None:
        for p in reply["passes"]:
            demo.passes[p["household"]] = {"pass": p["pass"], "number": p["number"]}
        demo.book.passes_issued(call.body["community"], reply["issued"])

    await demo.run("passes issued (one call a compound)", [
        demo.call("checkpoint", "issue_passes", t, demo.office(c.community), c.id, community=c.community,
                  compound=c.id, all_households=True)
        for c, t in zip(cs, spread(len(cs), at("07:00"), at("07:30")))], on_ok=issued,
        note=lambda: f"{sum(demo.book.passes.values()):,} passes")
    lost = demo.plan.lost_pass
    if lost is None or lost.id not in demo.passes:
        return

    def replaced(call, reply) -> None:
        demo.old_number = call.body["pass"]
        demo.passes[lost.id] = reply["replacement"]

    await demo.run("a lost pass replaced", [
        demo.call("checkpoint", "replace_pass", at("07:40"), demo.office(lost.compound.community), lost.id,
                  **{"pass": demo.passes[lost.id]["number"]}, reason="lost")], on_ok=replaced)


async def stock(demo: Demo) -> None:
    await demo.run("stock received (street allocation)", [
        demo.call("logistics", "receive_stock", at("07:45"), demo.office(community), community,
                  community=community, items=[{"item": k, "qty": n} for k, n in items.items()],
                  source="allocation", **{"from": "程家桥街道办事处"})
        for community, items in demo.plan.stock.items()],
        on_ok=lambda c, r: demo.book.received(c.body["community"], {i["item"]: i["qty"] for i in c.body["items"]}))


def arrival_call(demo: Demo, a, when):
    return demo.call("registry", "register_arrival", when, "city:health-app", a.id, resident=a.resident.id,
                     origin=a.origin, arrived_on=a.arrived_on.isoformat(), transport=a.transport,
                     visited=a.visited, city_class=a.city_class, risk_area_visited=a.risk_area_visited,
                     arrival=a.id)


def book_arrival(demo: Demo, a) -> None:
    demo.book.arrival(a.compound.community, a.id, a.arrived_on, a.city_class == "A" or a.risk_area_visited)


async def arrivals(demo: Demo) -> None:
    todo = [a for a in demo.plan.arrivals if a.category != "pending"]
    by_id = {a.id: a for a in todo}
    await demo.run("arrivals registered (city app)", [
        arrival_call(demo, a, t) for a, t in zip(todo, spread(len(todo), at("08:00"), at("10:00")))],
        on_ok=lambda c, r: book_arrival(demo, by_id[c.body["arrival"]]),
        note=lambda: f"class A {sum(a.city_class == 'A' for a in todo)}, B {sum(a.city_class == 'B' for a in todo)}")


async def reserve_masks(demo: Demo) -> None:
    masks = demo.plan.masks
    by_household = {m.household.id: m for m in masks}

    def reserved(call, reply) -> None:
        demo.vouchers.append((by_household[call.body["household"]], reply["number"]))

    await demo.run("masks reserved (vouchers)", [
        demo.call("logistics", "reserve_masks", t, demo.office(m.compound.community), m.household.id,
                  community=m.compound.community, household=m.household.id, qty=m.qty)
        for m, t in zip(masks, spread(len(masks), at("09:00"), at("11:00")))], on_ok=reserved)


async def verify(demo: Demo) -> None:
    todo = [a for a in demo.plan.arrivals if a.outcome is not None]
    by_id = {a.id: a for a in todo}

    def verified(call, reply) -> None:
        a = by_id[call.body["arrival"]]
        demo.book.verified(a.id, a.outcome, a.resident.id, a.household.id)

    calls = []
    for i, (a, t) in enumerate(zip(todo, spread(len(todo), at("10:00"), at("12:00")))):
        note = {"note": "车票核实：列车途经疫区未停靠"} if a.category == "false_a" else {}
        grid = f"staff:{a.compound.community.rsplit('.', 1)[1]}-grid-{i % 8 + 1}"
        calls.append(demo.call("registry", "verify_arrival", t, grid, a.id, arrival=a.id, outcome=a.outcome,
                               documents_checked=True, **note))
    await demo.run("arrivals verified door to door", calls, on_ok=verified,
                   note=lambda: ", ".join(f"{o} {n}" for o, n in sorted(Counter(a.outcome for a in todo).items())))


async def close_contacts(demo: Demo) -> None:
    contacts = demo.plan.close_contacts
    calls = [demo.call("quarantine", "open_case", t, demo.office(c.community), f"{r.id}-cc",
                       community=c.community, resident=r.id, kind="home", reason="close_contact",
                       starts_on=DAY.isoformat(), case=f"{r.id}-cc")
             for (c, h, r), t in zip(contacts, spread(len(contacts), at("11:00"), at("12:00")))]
    household = {r.id: h.id for _, h, r in contacts}
    await demo.run("close contacts to home quarantine", calls, on_ok=lambda c, rep: demo.book.case_opened(
        c.body["community"], c.body["resident"], household[c.body["resident"]], "home", c.body["case"]))


async def seal(demo: Demo) -> None:
    sealed = demo.plan.sealed
    by_key = {(c.id, b): hs for c, b, hs in sealed}
    await demo.run("a building sealed", [
        demo.call("quarantine", "seal", at("12:30"), demo.office(c.community), f"{c.id}-{b}",
                  community=c.community, compound=c.id, building=b) for c, b, _ in sealed],
        on_ok=lambda call, r: demo.book.sealed(
            call.body["community"], call.body["compound"], call.body["building"],
            [h.id for h in by_key[(call.body["compound"], call.body["building"])]]),
        note=lambda: ", ".join(f"{c.plan.name} {b}: {len(hs)} households" for c, b, hs in sealed))
