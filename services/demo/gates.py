"""The gate's other work in the demo's day (issue 17): residents going out say where to, vehicles are
checked at the gates (a resident's car, one with a quarantined passenger, a delivery van, an
ambulance), and parcels, takeaway and groceries are left at the drop point and collected (by the
household, or carried to the door of a confined one by a volunteer; one per compound left waiting).

Played in the evening, after the afternoon's gate traffic: the seal and every quarantine case are
known at the gates by then. What the services answer is booked (the board's figures); an answer
that differs from what the scenario expects is noted, as the gate traffic's are. Everything is
drawn from the seed, so the same seed sends the same commands with the same ids.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from services.demo.plan import at, gate_staff, spread
from services.demo.street import Compound, Household

if TYPE_CHECKING:
    from services.demo.day import Demo

DESTINATIONS = ("work", "shopping", "medical", "family", "other")
#: The board's figures this phase adds to the book (flows of the day; ``parcels_waiting`` is the
#: day's drops less its collections: the book holds one day).
FIGURES = ("vehicles_checked", "vehicles_denied", "parcels_dropped", "parcels_collected", "parcels_waiting",
           *(f"outings_{d}" for d in DESTINATIONS))
#: Shares of a compound's free households: one member walks out late saying where to; a parcel.
OUTINGS_SHARE = 0.02
PARCELS_SHARE = 0.01
KINDS = ("parcel", "takeaway", "groceries")


async def play(demo: Demo) -> None:
    rng = random.Random(demo.street.seed * 7_919 + 1_117)
    await outings(demo, rng)
    await vehicles(demo, rng)
    await parcels(demo, rng)


def _free(demo: Demo, compound: Compound) -> list[Household]:
    """Households nobody keeps in (no home case, no seal), with a pass, whose residents have no case."""
    confined = demo.plan.confined_households
    return [h for h in compound.households if h.id not in confined and h.id in demo.passes
            and h.residents and not any(r.id in demo.book.cases for r in h.residents)]


def _noted(demo: Demo, what: str, call, expected, got) -> None:
    if expected != got:
        demo.played.notes.append(f"{what} {call.body}: expected {expected}, answered {got}")


# -- where residents go ------------------------------------------------------------------------------


async def outings(demo: Demo, rng: random.Random) -> None:
    calls, plans = [], {}
    for c in demo.street.compounds:
        free = _free(demo, c)
        for n, h in enumerate(rng.sample(free, min(len(free), max(1, round(len(free) * OUTINGS_SHARE))))):
            gate, resident = rng.choice(c.open_gates), rng.choice(h.residents).id
            passage = f"{c.id}-w{n:04d}"
            plans[passage] = (c, h, resident, rng.choice(DESTINATIONS))
            calls.append((gate, passage))
    times = spread(len(calls), at("21:35"), at("21:55"))
    sent = [demo.call("checkpoint", "check_passage", t, gate_staff(plans[p][0], demo.street.tag, gate, "pm"), p,
                      community=plans[p][0].community, compound=plans[p][0].id, gate=gate, direction="out",
                      temperature_c=36.5, passage=p, resident=plans[p][2],
                      destination=plans[p][3], **{"pass": demo.passes[plans[p][1].id]["number"]})
            for (gate, p), t in zip(calls, times)]

    def walked(call, reply) -> None:
        c, h, resident, destination = plans[call.body["passage"]]
        allowed = reply["decision"]["allowed"]
        _noted(demo, "outing", call, None, reply["decision"]["reason"])
        demo.book.passage(c.community, "out", allowed, False, resident, h.id)
        demo.book.flows[c.community][f"outings_{destination}"] += allowed

    await demo.run("going out, saying where to (21:35)", sent, on_ok=walked,
                   note=lambda: ", ".join(f"{d} {sum(1 for p in plans.values() if p[3] == d)}" for d in DESTINATIONS))


# -- vehicles --------------------------------------------------------------------------------------------


def _plate(rng: random.Random) -> str:
    return f"沪{rng.choice('ABCDEFGHJKLMN')}{rng.randrange(10_000, 100_000)}"


def _outside_driver(rng: random.Random) -> dict:
    name = rng.choice(("刘师傅", "陈师傅", "赵师傅", "孙师傅"))
    return {"name": name, "phone": f"139{rng.randrange(10**8):08d}"}


def _quarantined_aboard(demo: Demo, compound: Compound) -> str | None:
    """A resident of this compound in home quarantine, if any (sorted: the same every run)."""
    homes = {h.id for h in compound.households}
    return next((r for r, case in sorted(demo.book.cases.items())
                 if case.kind == "home" and case.household in homes), None)


def _vehicle_plans(demo: Demo, rng: random.Random, c: Compound) -> list[tuple[dict, str | None]]:
    """(the check's fields, the reason expected) for one compound's vehicles."""
    free = _free(demo, c)
    sealed = {h.id for comp, _, hs in demo.plan.sealed if comp is c for h in hs}
    outside = "vehicles_not_admitted" if c.plan.level != "open" else None
    gate = c.open_gates[0]
    plans: list[tuple[dict, str | None]] = [
        (dict(gate=gate, direction="in", driver=_outside_driver(rng), purpose="delivery"), outside),
        (dict(gate=gate, direction="in", driver=_outside_driver(rng), purpose="emergency"), None)]
    if free:
        h = rng.choice(free)
        driver, *others = [r.id for r in h.residents]
        plans.append((dict(gate=gate, direction="out", driver={"resident": driver}, passengers=others[:2],
                           purpose="resident"), None))
        quarantined = _quarantined_aboard(demo, c)
        if quarantined is not None:
            home = demo.book.cases[quarantined].household
            why = "building_sealed" if home in sealed else "under_quarantine"
            plans.append((dict(gate=gate, direction="out", driver={"resident": driver}, passengers=[quarantined],
                               purpose="resident"), why))
    return plans


async def vehicles(demo: Demo, rng: random.Random) -> None:
    calls, expected = [], {}
    for c in demo.street.compounds:
        plans = _vehicle_plans(demo, rng, c)
        for n, ((fields, why), t) in enumerate(zip(plans, spread(len(plans), at("21:00"), at("21:30")))):
            vehicle = f"{c.id}-v{n:02d}"
            expected[vehicle] = why
            staff = gate_staff(c, demo.street.tag, fields["gate"], "pm")
            calls.append(demo.call("checkpoint", "check_vehicle", t, staff, vehicle, community=c.community,
                                   compound=c.id, plate=_plate(rng), vehicle=vehicle, **fields))

    def checked(call, reply) -> None:
        decision, flows = reply["decision"], demo.book.flows[call.body["community"]]
        _noted(demo, "vehicle", call, expected[call.body["vehicle"]], decision["reason"])
        flows["vehicles_checked"] += 1
        flows["vehicles_denied"] += not decision["allowed"]

    await demo.run("vehicles at the gates (21:00)", calls, on_ok=checked,
                   note=lambda: f"denied {sum(demo.book.flows[c]['vehicles_denied'] for c in demo.book.communities())}")


# -- the drop point --------------------------------------------------------------------------------------


def _drops(demo: Demo, rng: random.Random, c: Compound) -> list[tuple[Household, str | None]]:
    """(household, who collects: a resident id, a volunteer (None), or nobody yet ('')) for one compound."""
    free = _free(demo, c)
    picked = rng.sample(free, min(len(free), max(2, round(len(free) * PARCELS_SHARE))))
    drops: list[tuple[Household, str | None]] = [(h, rng.choice(h.residents).id) for h in picked]
    if len(drops) > 1:
        drops[-1] = (drops[-1][0], "")  # left waiting at the end of the day
    confined = sorted(demo.plan.confined_households & {h.id for h in c.households})[:c.n(3)]
    by_id = {h.id: h for h in c.households}
    return drops + [(by_id[h], None) for h in confined]


async def parcels(demo: Demo, rng: random.Random) -> None:
    drops, collects, who = [], [], {}
    for c in demo.street.compounds:
        planned = _drops(demo, rng, c)
        staff = gate_staff(c, demo.street.tag, c.open_gates[0], "pm")
        for n, ((h, collector), t) in enumerate(zip(planned, spread(len(planned), at("18:00"), at("19:00")))):
            parcel = f"{c.id}-k{n:04d}"
            drops.append(demo.call("checkpoint", "drop_parcel", t, staff, parcel, community=c.community,
                                   compound=c.id, gate=c.open_gates[0], household=h.id, kind=rng.choice(KINDS),
                                   parcel=parcel))
            if collector != "":
                by = {"resident": collector} if collector else {"volunteer": f"volunteer:{c.id}-parcels"}
                collects.append(demo.call("checkpoint", "collect_parcel", at("19:30"), staff, parcel, parcel=parcel,
                                          **by))
            who[parcel] = c.community

    def dropped(call, reply) -> None:
        flows = demo.book.flows[call.body["community"]]
        flows["parcels_dropped"] += 1
        flows["parcels_waiting"] += 1

    def collected(call, reply) -> None:
        flows = demo.book.flows[who[call.body["parcel"]]]
        flows["parcels_collected"] += 1
        flows["parcels_waiting"] -= 1

    def refused(call, reply) -> None:
        if not reply.get("ok"):
            _noted(demo, "collect_parcel", call, "ok", reply.get("error"))

    await demo.run("parcels left at the drop point", drops, on_ok=dropped)
    await demo.run("parcels collected (to the door)", collects, on_ok=collected, on_reply=refused,
                   note=lambda: f"{sum(1 for c in collects if 'volunteer' in c.body)} carried to confined households")
