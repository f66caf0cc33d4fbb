"""The city's list of the day's arrivals (issue 17's bulk lists), as `cordon import arrivals` sends
it: each row a ``register_pending_arrival`` by ID number. Residents on the list get their arrival at
once; the others (no household here, 双无) wait as pending registrations, and the grid workers
complete some of them at the door (``complete_registration``) into a household of the committee."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from services.demo.plan import DAY, at, spread
from shared.idcard import with_check_digit

if TYPE_CHECKING:
    from services.demo.day import Demo

#: Per committee at full scale: residents named on the list, people with no household here, and how
#: many of those the grid workers register at the door the same day.
RESIDENTS, NEWCOMERS, COMPLETED = 12, 6, 2
_NAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨"


def _newcomers(rng: random.Random, taken: set[str]):
    """Names and ID numbers of people not in the street's book (born 1990, from Wuhan's districts)."""
    n = 0
    while True:
        first17 = f"42010{rng.randint(1, 9)}1990{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        number = with_check_digit(first17)
        if number not in taken:
            taken.add(number)
            yield _NAMES[n % len(_NAMES)] + "新" + _NAMES[(n * 7 + 3) % len(_NAMES)], number
            n += 1


def _row(community: str, name: str, id_number: str, city_class: str) -> dict:
    return dict(community=community, name=name, id_number=id_number, origin="武汉", arrived_on=DAY.isoformat(),
                transport={"kind": "train", "number": "G1722"}, city_class=city_class, risk_area_visited=False)


async def arrivals_list(demo: Demo) -> None:
    street = demo.street
    arriving = {a.resident.id for a in demo.plan.arrivals}
    newcomers = _newcomers(random.Random(f"city-list-{street.seed}"), {r.id_number for r in street.residents})
    calls, pending = [], {}
    for committee, compounds in street.committees.items():
        community, office = street.community(committee), demo.office(street.community(committee))
        residents = [r for c in compounds for r in c.residents if r.id not in arriving]
        for r in residents[:compounds[0].n(RESIDENTS)]:
            calls.append(demo.call("registry", "register_pending_arrival", at("10:30"), office, f"{r.id}-list",
                                   **_row(community, r.name, r.id_number, "B"), arrival=f"{r.id}-list"))
        for n in range(compounds[0].n(NEWCOMERS)):
            name, number = next(newcomers)
            arrival = f"{committee}-{street.tag}-list-{n}"
            pending[arrival] = (community, compounds[0].households[n % len(compounds[0].households)].id)
            calls.append(demo.call("registry", "register_pending_arrival", at("10:30"), office, arrival,
                                   **_row(community, name, number, "AB"[n % 2]), arrival=arrival))

    def listed(call, reply) -> None:
        event = reply["events"][0]
        if event["type"] == "ArrivalRegistered":  # a resident's: counted as any arrival
            data = event["data"]
            demo.book.arrival(event["community"], data["arrival"], DAY, data["requires_verification"])

    await demo.run("the city's list of arrivals", calls, on_ok=listed,
                   note=lambda: f"{len(pending)} with no household here")
    await complete_at_the_door(demo, pending)


async def complete_at_the_door(demo: Demo, pending: dict[str, tuple[str, str]]) -> None:
    """The first of each committee's pending registrations completed in a household of the committee."""
    todo, per_community = [], {}
    for arrival, (community, household) in pending.items():
        per_community[community] = per_community.get(community, 0) + 1
        if per_community[community] <= demo.street.compounds[0].n(COMPLETED):
            todo.append((arrival, community, household))

    def completed(call, reply) -> None:
        registered, arrived = reply["events"][0], reply["events"][1]
        demo.book.resident(registered["community"], registered["data"]["resident"])
        demo.book.arrival(arrived["community"], arrived["data"]["arrival"], DAY,
                          arrived["data"]["requires_verification"])

    await demo.run("registered at the door (pending)", [
        demo.call("registry", "complete_registration", t, demo.office(community), arrival, arrival=arrival,
                  household=household, resident=f"{arrival}-r")
        for (arrival, community, household), t in zip(todo, spread(len(todo), at("11:00"), at("11:30")))],
        on_ok=completed)
