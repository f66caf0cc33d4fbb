"""Who does what on the demo's day (2020-02-17, Asia/Shanghai): arrivals and their verification,
close contacts, the sealed building, gate traffic with its refusals, supply requests, mask
vouchers, check-ins and duty shifts. Drawn once from the seed, before anything is sent. Pure.

Each gate passage carries the decision the scenario expects (CONTRACT.md's reasons), so the demo
can say how many of the services' decisions were the ones intended.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from services.demo.street import Compound, Household, Resident, Street, scaled

CST = timezone(timedelta(hours=8))
DAY = date(2020, 2, 17)
EVE = DAY - timedelta(days=1)
TRIPS_PER_HOUSEHOLD = 0.8  # one member goes out and comes back, most days
MASKS_SHARE = 0.15  # households reserving masks on the day
REDEEM_SHARE = 0.85

RISK_ORIGINS = (("湖北省武汉市", "武汉"), ("湖北省孝感市", "孝感"), ("湖北省黄冈市", "黄冈"), ("浙江省温州市", "温州"))
FALSE_A_ORIGINS = (("湖南省长沙市", "长沙", "G1722"), ("广东省广州市", "广州", "G1104"), ("河南省郑州市", "郑州", "G1806"))
B_ORIGINS = (("江苏省苏州市", "苏州"), ("浙江省杭州市", "杭州"), ("安徽省合肥市", "合肥"), ("江苏省南京市", "南京"),
             ("山东省济南市", "济南"), ("江西省南昌市", "南昌"))
PURPOSES = ("探望老人", "送药", "维修水管", "送生活用品")


def at(hhmm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=CST)


def spread(n: int, start: datetime, end: datetime) -> list[datetime]:
    """``n`` instants evenly from ``start`` to before ``end``, to the second."""
    step = (end - start) / max(n, 1)
    return [(start + step * i).replace(microsecond=0) for i in range(n)]


@dataclass(frozen=True)
class Arrival:
    id: str
    compound: Compound
    household: Household
    resident: Resident
    category: str  # home | centralized | false_a | b | pending | old
    origin: str
    arrived_on: date
    transport: dict
    visited: list[dict]
    city_class: str
    risk_area_visited: bool

    @property
    def outcome(self) -> str | None:
        """What the door-to-door check decides; None: cleared on registration or not yet checked."""
        return {"home": "home_quarantine", "centralized": "centralized_quarantine",
                "false_a": "cleared"}.get(self.category)


@dataclass(frozen=True)
class Passage:
    compound: Compound
    gate: str
    direction: str
    temperature_c: float
    at: datetime
    #: The household whose pass is shown (its number, from issue_passes), if any.
    pass_of: str | None = None
    resident: str | None = None
    visitor: dict | None = None
    #: Show the pass that was reported lost (revoked) instead of the household's current one.
    old_pass: bool = False
    #: The reason the scenario expects (None: allowed).
    expect: str | None = None


@dataclass(frozen=True)
class Request:
    id: str
    compound: Compound
    household: Household
    kind: str
    items: dict[str, int]
    note: str | None = None
    no_answer: bool = False


@dataclass(frozen=True)
class Masks:
    compound: Compound
    household: Household
    qty: int
    redeem: bool


@dataclass(frozen=True)
class Shift:
    compound: Compound
    gate: str
    staff: str
    id: str
    start: datetime
    end: datetime


@dataclass
class DayPlan:
    arrivals: list[Arrival] = field(default_factory=list)
    close_contacts: list[tuple[Compound, Household, Resident]] = field(default_factory=list)
    sealed: list[tuple[Compound, str, list[Household]]] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    masks: list[Masks] = field(default_factory=list)
    shifts: list[Shift] = field(default_factory=list)
    lost_pass: Household | None = None
    checkin_skipped: set[str] = field(default_factory=set)  # residents (home cases) who do not report
    transfer: str | None = None  # the resident whose check-in sends them to hospital
    stock: dict[str, dict[str, int]] = field(default_factory=dict)  # community -> items received

    @property
    def confined_households(self) -> set[str]:
        homes = {a.household.id for a in self.arrivals if a.category == "home"}
        homes |= {h.id for _, h, _ in self.close_contacts}
        return homes | {h.id for _, _, hs in self.sealed for h in hs}


def plan_day(street: Street) -> DayPlan:
    rng = random.Random(street.seed * 1_000_003 + 17)
    day = DayPlan()
    used: set[str] = set()  # residents with a role already (arrival, contact, fever)
    for compound in street.compounds:
        _arrivals(rng, street.tag, compound, day, used)
        _close_contacts(rng, compound, day, used)
        _seal(compound, day)
    confined = day.confined_households
    away = {a.resident.id for a in day.arrivals if a.category == "centralized"}
    for compound in street.compounds:
        _traffic(rng, compound, day, confined, away, used)
        _shifts(street.tag, compound, day)
    _lost_pass(rng, street, day, confined)
    _requests(rng, street, day, confined)
    _masks(rng, street, day, confined)
    _checkins(rng, street, day)
    _stock(street, day)
    day.passages.sort(key=lambda p: p.at)
    return day


# -- arrivals, close contacts, the seal ---------------------------------------------------------


def _families(rng: random.Random, compound: Compound, n: int, used: set[str]) -> list[tuple[Household, Resident]]:
    """``n`` people who travelled together by household (a family returns together)."""
    out: list[tuple[Household, Resident]] = []
    households = [h for h in compound.households if not any(r.id in used for r in h.residents)]
    rng.shuffle(households)
    for h in households:
        for r in h.residents[: rng.randint(1, len(h.residents))]:
            if len(out) == n:
                return out
            out.append((h, r))
            used.add(r.id)
    return out


def _singles(rng: random.Random, compound: Compound, n: int, used: set[str],
             households: list[Household] | None = None) -> list[tuple[Household, Resident]]:
    """``n`` people of the compound (or of ``households``) with no role yet."""
    pool = [(h, r) for h in (compound.households if households is None else households)
            for r in h.residents if r.id not in used]
    picked = rng.sample(pool, min(n, len(pool)))
    used.update(r.id for _, r in picked)
    return picked


def _arrivals(rng: random.Random, tag: str, compound: Compound, day: DayPlan, used: set[str]) -> None:
    p, n = compound.plan, compound.n
    home = max(0, n(p.home_quarantine) - _contacts(compound))
    counts = {"home": home, "centralized": n(p.centralized), "false_a": n(p.false_a),
              "pending": n(p.pending), "old": n(p.old_arrivals)}
    counts["b"] = max(0, n(p.arrivals) - sum(counts.values()))
    for category, count in counts.items():
        people = _families(rng, compound, count, used) if category == "home" else _singles(rng, compound, count, used)
        for h, r in people:
            arrival = f"{compound.id}-a{len(day.arrivals) + 1:04d}"
            day.arrivals.append(_arrival(rng, arrival, compound, h, r, category))


def _arrival(rng: random.Random, id_: str, compound: Compound, h: Household, r: Resident, category: str) -> Arrival:
    back = {"old": rng.randint(15, 20), "pending": 0}.get(category, rng.randint(0, 13))
    arrived_on = DAY - timedelta(days=back)
    stay_from = arrived_on - timedelta(days=rng.randint(5, 20))
    common = dict(id=id_, compound=compound, household=h, resident=r, category=category, arrived_on=arrived_on)
    if category in ("home", "centralized", "pending"):
        origin, place = rng.choice(RISK_ORIGINS)
        by_train = rng.random() < 0.7
        transport = {"kind": "train", "number": f"G{rng.randint(100, 1999)}"} if by_train else {"kind": "road"}
        return Arrival(**common, origin=origin, transport=transport, city_class="A", risk_area_visited=True,
                       visited=[{"place": place, "from": stay_from.isoformat(), "to": arrived_on.isoformat()}])
    if category == "false_a":
        origin, place, train = rng.choice(FALSE_A_ORIGINS)
        return Arrival(**common, origin=origin, transport={"kind": "train", "number": train}, city_class="A",
                       risk_area_visited=False,
                       visited=[{"place": place, "from": stay_from.isoformat(), "to": arrived_on.isoformat()}])
    origin, place = rng.choice(B_ORIGINS)
    return Arrival(**common, origin=origin, transport={"kind": "road"}, city_class="B", risk_area_visited=False,
                   visited=[{"place": place, "from": stay_from.isoformat(), "to": arrived_on.isoformat()}])


def _contacts(compound: Compound) -> int:
    p = compound.plan
    if not p.close_contacts:
        return 0
    return min(compound.n(p.close_contacts), max(0, compound.n(p.home_quarantine) - 1))


def _close_contacts(rng: random.Random, compound: Compound, day: DayPlan, used: set[str]) -> None:
    for h, r in _families(rng, compound, _contacts(compound), used):
        day.close_contacts.append((compound, h, r))


def _seal(compound: Compound, day: DayPlan) -> None:
    """Seal the last building(s) of the compound (a confirmed case lived there)."""
    for building in compound.buildings[::-1][: compound.n(compound.plan.sealed_buildings)]:
        households = [h for h in compound.households if h.building == building]
        day.sealed.append((compound, building, households))


# -- the gates ----------------------------------------------------------------------------------


def _temperature(rng: random.Random) -> float:
    return round(rng.uniform(36.0, 37.0), 1)


def _fever(rng: random.Random) -> float:
    return round(rng.uniform(37.4, 38.9), 1)


def _when(rng: random.Random, start: str = "13:00", end: str = "21:00") -> datetime:
    a, b = at(start), at(end)
    return (a + (b - a) * rng.random()).replace(microsecond=0)


def _traffic(rng: random.Random, compound: Compound, day: DayPlan, confined: set[str], away: set[str],
             used: set[str]) -> None:
    free = [h for h in compound.households if h.id not in confined]
    gates = compound.open_gates
    closed = compound.plan.level != "open"
    add = day.passages.append
    for h, r in _singles(rng, compound, compound.n(compound.plan.fevers), used, free):  # coming home
        add(Passage(compound, rng.choice(gates), "in", _fever(rng), _when(rng), pass_of=h.id, resident=r.id,
                    expect="fever"))
    for _ in range(round(len(compound.households) * TRIPS_PER_HOUSEHOLD)):
        if not free:
            break
        h = rng.choice(free)
        people = [r for r in h.residents if r.id not in away and r.id not in used] or None
        if people is None:
            continue
        r = rng.choice(people)
        named = r.id if rng.random() < 0.1 else None
        shows_pass = closed or rng.random() < 0.8
        out = _when(rng, "13:00", "20:30")
        back = min(out + timedelta(minutes=rng.randint(20, 180)), at("21:30"))
        for direction, when in (("out", out), ("in", back)):
            add(Passage(compound, rng.choice(gates), direction, _temperature(rng), when,
                        pass_of=h.id if shows_pass else None, resident=named if shows_pass else r.id))
    _refusals(rng, compound, day, confined, free)
    _visitors(rng, compound, day, free)


def _refusals(rng: random.Random, compound: Compound, day: DayPlan, confined: set[str],
              free: list[Household]) -> None:
    """The few who are turned back: the quarantined, a sealed building, a closed gate, a forgotten pass."""
    add, gates, n = day.passages.append, compound.open_gates, compound.n
    sealed = {h.id for c, _, hs in day.sealed if c is compound for h in hs}
    quarantined = [h for h in compound.households if h.id in confined and h.id not in sealed]
    for h in rng.sample(quarantined, min(n(6), len(quarantined))) if quarantined else []:
        add(Passage(compound, rng.choice(gates), "out", _temperature(rng), _when(rng), pass_of=h.id,
                    expect="under_quarantine"))
    in_sealed = [h for h in compound.households if h.id in sealed]
    for h in rng.sample(in_sealed, min(n(5), len(in_sealed))) if in_sealed else []:
        add(Passage(compound, rng.choice(gates), "out", _temperature(rng), _when(rng), pass_of=h.id,
                    expect="building_sealed"))
    shut = [g for g in compound.gates if g not in gates]
    for _ in range(n(4) if shut and free else 0):
        add(Passage(compound, rng.choice(shut), rng.choice(("in", "out")), _temperature(rng), _when(rng),
                    pass_of=rng.choice(free).id, expect="gate_closed"))
    if compound.plan.level != "open" and free:
        for _ in range(n(3)):
            h = rng.choice(free)
            add(Passage(compound, rng.choice(gates), "in", _temperature(rng), _when(rng),
                        resident=rng.choice(h.residents).id, expect="no_valid_pass"))


def _visitors(rng: random.Random, compound: Compound, day: DayPlan, free: list[Household]) -> None:
    """Visitors: refused at closed management, let in (and out) where the compound is open."""
    if not free:
        return
    admitted = compound.plan.level == "open"
    count = compound.n(4) if admitted else (compound.n(2) if compound.plan.home_quarantine else 0)
    for i in range(count):
        host = rng.choice(free)
        visitor = {"name": _people_name(rng), "phone": "13" + "".join(str(rng.randint(0, 9)) for _ in range(9)),
                   "host_household": host.id, "purpose": rng.choice(PURPOSES)}
        fever = admitted and i == 0
        came = _when(rng, "13:00", "19:00")
        expect = "fever" if fever else (None if admitted else "visitors_not_admitted")
        temperature = _fever(rng) if fever else _temperature(rng)
        day.passages.append(Passage(compound, rng.choice(compound.open_gates), "in", temperature, came,
                                    visitor=visitor, expect=expect))
        if expect is None:
            day.passages.append(Passage(compound, rng.choice(compound.open_gates), "out", _temperature(rng),
                                        came + timedelta(minutes=rng.randint(15, 90)), visitor=visitor))


def _people_name(rng: random.Random) -> str:
    from services.demo.street import GIVEN, SURNAMES

    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(2))


def _lost_pass(rng: random.Random, street: Street, day: DayPlan, confined: set[str]) -> None:
    """One household of a closed compound lost its pass in the morning; the old one is tried later."""
    compound = next((c for c in street.compounds if c.plan.level != "open" and len(c.households) > 1
                     and not c.plan.home_quarantine), street.compounds[0])
    free = [h for h in compound.households if h.id not in confined]
    if not free:
        return
    day.lost_pass = h = rng.choice(free)
    day.passages.append(Passage(compound, compound.open_gates[0], "in", _temperature(rng), _when(rng),
                                pass_of=h.id, old_pass=True, expect="no_valid_pass"))


def gate_staff(compound: Compound, tag: str, gate: str, label: str) -> str:
    """The volunteer on duty at a gate, e.g. ``volunteer:nangong-01-g1-am``."""
    return f"volunteer:{compound.id.removesuffix('-' + tag)}-{gate}-{label}"


def _shifts(tag: str, compound: Compound, day: DayPlan) -> None:
    """Two shifts of eight hours at every open gate."""
    for gate in compound.open_gates:
        for label, start, end in (("am", "06:00", "14:00"), ("pm", "14:00", "22:00")):
            day.shifts.append(Shift(compound, gate, gate_staff(compound, tag, gate, label),
                                    f"{compound.id}-{gate}-{label}", at(start), at(end)))


# -- logistics ------------------------------------------------------------------------------------


def _requests(rng: random.Random, street: Street, day: DayPlan, confined: set[str]) -> None:
    """Food for the elderly living alone, medicine refills for the chronically ill, help with a
    medical device; one elderly woman does not open her door."""
    for committee, compounds in street.committees.items():
        households = [h for c in compounds for h in c.households if h.id not in confined]
        alone = [h for h in households if any("elderly_alone" in r.vulnerabilities for r in h.residents)]
        ill = [h for h in households if any("chronic_illness" in r.vulnerabilities for r in h.residents)]
        device = [h for h in households if any("medical_device" in r.vulnerabilities for r in h.residents)]
        scale = street.scale
        for h in rng.sample(alone, min(scaled(100, scale), len(alone))):
            day.requests.append(Request(f"{h.id}-food", h.compound, h, "food",
                                        {"vegetable-pack": 1, "eggs": 1, "rice": 1}))
        for h in rng.sample(ill, min(scaled(40, scale), len(ill))):
            day.requests.append(Request(f"{h.id}-medicine", h.compound, h, "medicine", {"medicine": 1},
                                        note="降压药 一个月"))
        for h in device:
            day.requests.append(Request(f"{h.id}-device", h.compound, h, "device_help", {"device-help": 1},
                                        note="制氧机滤芯更换"))
    # The oldest of the first committee's residents asking for food does not open the door: the
    # bag stays on the handle (DOMAIN.md: the secretary who found an 80-year-old after a stroke).
    first = street.compounds[0].community
    food = [i for i, r in enumerate(day.requests) if r.kind == "food" and r.compound.community == first]
    if food:
        i = max(food, key=lambda i: (max(r.age for r in day.requests[i].household.residents), day.requests[i].id))
        day.requests[i] = dataclasses.replace(day.requests[i], no_answer=True)


def _masks(rng: random.Random, street: Street, day: DayPlan, confined: set[str]) -> None:
    for compound in street.compounds:
        free = [h for h in compound.households if h.id not in confined]
        for h in rng.sample(free, min(len(free), max(1, round(len(compound.households) * MASKS_SHARE)))):
            day.masks.append(Masks(compound, h, rng.choice((3, 5, 5, 10)), rng.random() < REDEEM_SHARE))


def _checkins(rng: random.Random, street: Street, day: DayPlan) -> None:
    """A few home-quarantined people forget to report; one reports a fever and cough (→ hospital)."""
    home = sorted({a.resident.id for a in day.arrivals if a.category == "home"}
                  | {r.id for _, _, r in day.close_contacts})
    if not home:
        return
    day.transfer = rng.choice(home)
    rest = [r for r in home if r != day.transfer]
    day.checkin_skipped = set(rng.sample(rest, min(len(rest), scaled(6, street.scale))))


def _stock(street: Street, day: DayPlan) -> None:
    """The street office's allocation in the morning: enough for the day, with some to spare."""
    confined = day.confined_households
    for committee, compounds in street.committees.items():
        community = street.community(committee)
        ids = {h.id for c in compounds for h in c.households}
        daily = len(confined & ids)
        food = [r for r in day.requests if r.household.id in ids and r.kind == "food"]
        masks = sum(m.qty for m in day.masks if m.household.id in ids)
        day.stock[community] = {"vegetable-pack": daily + len(food) + 20, "eggs": len(food) + 10,
                                "rice": len(food) + 10, "masks": masks + 200, "disinfectant": 50}
