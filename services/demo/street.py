"""The street the demo plays: committees, compounds, buildings, households and residents, shaped
like the reports in DOMAIN.md, generated from a seed. Pure: no I/O, no clock.

Real sizes (``scale=1``):

- committee Nangong runs 10 compounds and 5,400 households (it hand-made 5,400 passes in a day);
  its largest compound has 2,716 households, 169 people of it in home quarantine;
- committee Tianshan: 13 staff serve 3 compounds and about 2,100 households; one compound merged
  its 7 gates into 2;
- committee Xinjing has a compound of 835 households holding 1,502 people, 52 of them recent
  arrivals from an outbreak city, and a "three-no" compound of 24 households (no property
  management, no gatekeeper, no owners' committee).

``scale`` shrinks every count (households, people, arrivals, cases, fevers, ...) proportionally,
at least 1 of each; the shape (committees, compounds, gates) stays.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from dataclasses import dataclass, field

from shared.idcard import with_check_digit

STREET = "changning.chengjiaqiao"
YEAR = 2020  # the demo's day is 2020-02-17: ages and birth years count from it

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅建国志文辉海燕鹏飞雪琴云凤春"


@dataclass(frozen=True)
class CompoundPlan:
    """A compound as the reports give it; counts are at full size."""

    key: str  # short id, unique in the committee (the slug gets the seed's tag)
    name: str
    households: int
    gates: int = 2
    open_gates: int | None = None  # None: all; the rest are closed on the day (merged gates)
    people: int | None = None  # exact people count if the report gives one; else drawn
    level: str = "closed"  # control level on the day
    home_quarantine: int = 0  # people in home quarantine by the end of the day ...
    close_contacts: int = 0  # ... of whom close contacts (the rest arrived from a risk area)
    arrivals: int = 0  # recent arrivals (last 14 days), home-quarantined ones included
    centralized: int = 0  # arrivals sent to centralized quarantine
    false_a: int = 0  # class A only because their train passed through an outbreak area
    pending: int = 0  # class A registered in the evening, verified tomorrow
    old_arrivals: int = 0  # arrived more than 14 days ago (not in the 14-day figure)
    fevers: int = 0  # residents with a fever at a gate
    sealed_buildings: int = 0
    three_no: bool = False


@dataclass(frozen=True)
class CommitteePlan:
    slug: str
    name: str
    compounds: tuple[CompoundPlan, ...]


#: The street at full size (see the module docstring for the sources).
PLAN: tuple[CommitteePlan, ...] = (
    CommitteePlan("nangong", "南宫居民区", (
        CompoundPlan("c01", "南宫新村", 2716, gates=4, open_gates=2, home_quarantine=169, close_contacts=19,
                     arrivals=230, centralized=2, false_a=12, pending=5, old_arrivals=8, fevers=3,
                     sealed_buildings=1),
        CompoundPlan("c02", "程桥一村", 520, arrivals=14, false_a=1, fevers=1),
        CompoundPlan("c03", "程桥二村", 410, arrivals=10),
        CompoundPlan("c04", "虹桥花苑", 380, arrivals=9),
        CompoundPlan("c05", "天山公寓", 350, arrivals=8),
        CompoundPlan("c06", "哈密小区", 300, arrivals=7),
        CompoundPlan("c07", "仙霞苑", 260, arrivals=6),
        CompoundPlan("c08", "剑河小区", 220, arrivals=5),
        CompoundPlan("c09", "茅台花园", 150, arrivals=4),
        CompoundPlan("c10", "水城里", 94, gates=1, level="open", arrivals=2),
    )),
    CommitteePlan("tianshan", "天山居民区", (
        CompoundPlan("c01", "天山新村", 1120, gates=7, open_gates=2, home_quarantine=12, arrivals=40, false_a=2,
                     pending=1, fevers=1),
        CompoundPlan("c02", "遵义小区", 610, arrivals=12),
        CompoundPlan("c03", "娄山公寓", 370, arrivals=6),
    )),
    CommitteePlan("xinjing", "新泾居民区", (
        CompoundPlan("c01", "新泾家园", 835, gates=3, people=1502, home_quarantine=20, arrivals=52,
                     false_a=6, pending=2, fevers=2),
        CompoundPlan("c02", "新泾老街", 24, gates=1, three_no=True, arrivals=2),
    )),
)

#: People per household where the report gives no count (Shanghai's old compounds).
HOUSEHOLD_SIZES = ((1, 0.22), (2, 0.38), (3, 0.25), (4, 0.10), (5, 0.05))
HOUSEHOLDS_PER_BUILDING = 68


@dataclass(frozen=True)
class Resident:
    id: str
    household: str
    name: str
    id_number: str
    birth_year: int
    phone: str | None
    vulnerabilities: tuple[str, ...] = ()

    @property
    def age(self) -> int:
        return YEAR - self.birth_year


@dataclass
class Household:
    id: str
    compound: "Compound"
    building: str
    address: str
    residents: list[Resident] = field(default_factory=list)

    @property
    def vulnerable(self) -> bool:
        return any(r.vulnerabilities for r in self.residents)


@dataclass
class Compound:
    id: str
    community: str
    plan: CompoundPlan
    buildings: list[str]
    gates: list[str]
    households: list[Household] = field(default_factory=list)
    scale: float = 1.0

    @property
    def open_gates(self) -> list[str]:
        n = self.plan.open_gates if self.plan.open_gates is not None else len(self.gates)
        return self.gates[:n]

    def n(self, full: int) -> int:
        """A full-size count of this compound at the street's scale (0 stays 0, else at least 1)."""
        return scaled(full, self.scale)

    @property
    def residents(self) -> list[Resident]:
        return [r for h in self.households for r in h.residents]


@dataclass
class Street:
    seed: int
    scale: float
    tag: str
    committees: dict[str, list[Compound]]

    @property
    def compounds(self) -> list[Compound]:
        return [c for cs in self.committees.values() for c in cs]

    @property
    def households(self) -> list[Household]:
        return [h for c in self.compounds for h in c.households]

    @property
    def residents(self) -> list[Resident]:
        return [r for h in self.households for r in h.residents]

    def community(self, committee: str) -> str:
        return f"{STREET}.{committee}"


def scaled(full: int, scale: float) -> int:
    return 0 if full <= 0 else max(1, round(full * scale))


def seed_tag(seed: int) -> str:
    """A short slug from the seed: every id the demo creates carries it, so two seeds never collide."""
    return "s" + hashlib.sha1(str(seed).encode()).hexdigest()[:5]


class People:
    """Draws residents: names, ages, ID numbers (valid check digit, unique), phones."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.numbers: set[str] = set()

    def age(self, household_size: int) -> int:
        r = self.rng.random()
        if household_size == 1:  # people living alone in old compounds are mostly retired
            return self.rng.randint(62, 92) if r < 0.55 else self.rng.randint(24, 61)
        if r < 0.16:
            return self.rng.randint(1, 17)
        if r < 0.74:
            return self.rng.randint(18, 59)
        return self.rng.randint(60, 90)

    def id_number(self, birth_year: int) -> str:
        while True:
            day = self.rng.randint(1, 28)
            month = self.rng.randint(1, 12)
            # Where the ID was issued: a province, city and county code (residents come from all over).
            area = f"{self.rng.randint(11, 65)}{self.rng.randint(1, 20):02d}{self.rng.randint(1, 30):02d}"
            first17 = f"{area}{birth_year:04d}{month:02d}{day:02d}{self.rng.randint(0, 999):03d}"
            number = with_check_digit(first17)
            if number not in self.numbers:
                self.numbers.add(number)
                return number

    def name(self) -> str:
        given = "".join(self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2, 2))))
        return self.rng.choice(SURNAMES) + given

    def phone(self, age: int) -> str | None:
        if age < 12 or (age > 80 and self.rng.random() < 0.6):
            return None  # children and many of the very old have no phone of their own
        return "1" + self.rng.choice("3589") + "".join(str(self.rng.randint(0, 9)) for _ in range(9))


def sizes(rng: random.Random, households: int, people: int | None) -> list[int]:
    """People per household: drawn from HOUSEHOLD_SIZES, or summing exactly to ``people``."""
    if people is None:
        values, weights = zip(*HOUSEHOLD_SIZES)
        return rng.choices(values, weights, k=households)
    people = max(people, households)
    out = [1] * households
    for _ in range(people - households):
        i = rng.randrange(households)
        while out[i] >= 6:
            i = rng.randrange(households)
        out[i] += 1
    return out


def vulnerabilities(rng: random.Random, age: int, alone: bool) -> tuple[str, ...]:
    found = []
    if alone and age >= 70:
        found.append("elderly_alone")
    if age >= 75 and rng.random() < 0.08:
        found.append("limited_mobility")
    if age >= 60 and rng.random() < 0.06:
        found.append("chronic_illness")
    return tuple(found)


def build(seed: int = 7, scale: float = 1.0) -> Street:
    """The whole street, the same for the same seed and scale."""
    if not 0 < scale <= 1:
        raise ValueError("scale must be in (0, 1]")
    rng = random.Random(seed)
    people = People(rng)
    tag = seed_tag(seed)
    committees: dict[str, list[Compound]] = {}
    for committee in PLAN:
        community = f"{STREET}.{committee.slug}"
        out = committees.setdefault(committee.slug, [])
        for plan in committee.compounds:
            n_households = scaled(plan.households, scale)
            # A compound with a sealed building keeps another one: sealing is never the whole compound.
            n_buildings = max(2 if plan.sealed_buildings else 1, math.ceil(n_households / HOUSEHOLDS_PER_BUILDING))
            compound = Compound(
                id=f"{committee.slug}-{plan.key[1:]}-{tag}", community=community, plan=plan,
                buildings=[f"b{i + 1:02d}" for i in range(n_buildings)],
                gates=[f"g{i + 1}" for i in range(plan.gates)], scale=scale)
            counts = sizes(rng, n_households, scaled(plan.people, scale) if plan.people else None)
            for i, size in enumerate(counts):
                building = compound.buildings[i % n_buildings]
                h = Household(id=f"{compound.id}-h{i + 1:04d}", compound=compound, building=building,
                              address=f"{plan.name}{building[1:].lstrip('0')}号{101 + i // n_buildings}室")
                for j in range(size):
                    age = people.age(size)
                    birth_year = YEAR - age
                    h.residents.append(Resident(
                        id=f"{h.id}-r{j + 1}", household=h.id, name=people.name(),
                        id_number=people.id_number(birth_year), birth_year=birth_year,
                        phone=people.phone(age), vulnerabilities=vulnerabilities(rng, age, size == 1)))
                compound.households.append(h)
            out.append(compound)
    _oxygen_machine(committees)
    return Street(seed=seed, scale=scale, tag=tag, committees=committees)


def _oxygen_machine(committees: dict[str, list[Compound]]) -> None:
    """One resident per committee depends on an oxygen machine (DOMAIN.md): the oldest one."""
    for compounds in committees.values():
        oldest = max((r for c in compounds for r in c.residents), key=lambda r: (r.age, r.id))
        for c in compounds:
            for h in c.households:
                for i, r in enumerate(h.residents):
                    if r is oldest and "medical_device" not in r.vulnerabilities:
                        found = (*r.vulnerabilities, "medical_device")
                        h.residents[i] = dataclasses.replace(r, vulnerabilities=found)
