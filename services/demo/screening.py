"""The day's screening round (issue 17): one compound's round in the late afternoon, whose sampled
stay in until their result is back. Codes are printed ahead for the elderly living alone, who
bring the slip alone; the others are sampled by id. One of them tries to go out before the result
and is turned back (``awaiting_result``), and goes out once it is recorded in the evening; the last
results are still pending at the end of the day (the board's ``results_pending``). On a compound
with a sealed building, the round extends the seal to its results (SealExtended)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.demo.plan import DAY, Passage, at, spread

if TYPE_CHECKING:
    from services.demo.day import Demo
    from services.demo.street import Compound, Resident

#: The passages of this phase, numbered after the planned ones (``passage_call`` makes their ids).
FIRST_PASSAGE = 90_000
PENDING = 2  # results not back by the end of the day


def compound(demo: Demo) -> Compound | None:
    """The compound of the sealed building if there is one (the round extends its seal), else the
    first one; never a sealed one (nobody would go out)."""
    sealed = [c for c, _, _ in demo.plan.sealed]
    return next((c for c in sealed + demo.street.compounds if c.plan.level != "sealed"), None)


def sampled(demo: Demo, c: Compound) -> list[Resident]:
    """Residents with no other part in the day (not confined, not arrived), a few per compound."""
    confined = demo.plan.confined_households
    arrived = {a.resident.id for a in demo.plan.arrivals}
    free = [r for h in c.households if h.id not in confined and h.id in demo.passes
            for r in h.residents if r.id not in arrived]
    return free[: max(PENDING + 2, min(40, len(free) // 20))]


async def round_(demo: Demo) -> None:
    c = compound(demo)
    people = sampled(demo, c) if c is not None else []
    if len(people) < PENDING + 2:
        return
    office, screening = demo.office(c.community), f"{c.id}-round-1"
    await demo.run("screening round (stay in for results)", [
        demo.call("quarantine", "schedule_screening", at("15:00"), office, screening, community=c.community,
                  compound=c.id, on=str(DAY), screening=screening, stay_in_until_result=True,
                  slots=[{"label": "everyone", "from": "16:00", "to": "18:00"}])])
    elderly = [r for r in people if "elderly_alone" in r.vulnerabilities] or people[:1]
    codes: dict[str, str] = {}
    await demo.run("sample codes for the elderly", [
        demo.call("quarantine", "issue_sample_codes", at("15:10"), office, screening, screening=screening,
                  residents=[r.id for r in elderly])],
        on_ok=lambda call, reply: codes.update({p["resident"]: p["code"] for p in reply["codes"]}))
    await demo.run("samples taken (by code or id)", [
        demo.call("quarantine", "record_sample", t, office, f"{screening}-{r.id}", screening=screening,
                  **({"code": codes[r.id]} if r.id in codes else {"resident": r.id}))
        for r, t in zip(people, spread(len(people), at("16:00"), at("18:00")))],
        on_ok=lambda call, reply: demo.book.sampled(c.community, _sample(reply)))
    await demo.settle()  # the gate knows who awaits a result
    await _goes_out(demo, c, people[0], "18:10", "awaiting_result", 0)
    await demo.run("screening results recorded", [
        demo.call("quarantine", "record_result", t, office, f"{screening}-{r.id}", screening=screening,
                  resident=r.id, result="negative")
        for r, t in zip(people[:-PENDING], spread(len(people) - PENDING, at("19:00"), at("20:00")))],
        on_ok=lambda call, reply: demo.book.result(_sample(reply)))
    await demo.settle()
    await _goes_out(demo, c, people[0], "20:30", None, 1)


def _sample(reply: dict) -> str:
    data = reply["events"][0]["data"]
    return f"{data['screening']}/{data['resident']}"


async def _goes_out(demo: Demo, c: Compound, r: Resident, hhmm: str, expect: str | None, n: int) -> None:
    p = Passage(compound=c, gate=c.open_gates[0], direction="out", temperature_c=36.4, at=at(hhmm),
                pass_of=r.household, resident=r.id, expect=expect)
    await demo.run("out awaiting the result" if expect else "out after the result", [
        demo.passage_call(p, FIRST_PASSAGE + n)], on_reply=lambda call, reply: demo.decided(p, call, reply))
