"""Play the planned day through the public message API, phase by phase, booking what was accepted.

Every command gives ``occurred_at`` (the day runs at accelerated time) and a ``command_id`` made
from the seed's ids, so playing the same seed again on the same Cordon replays the stored replies
and changes nothing. Between phases that act on facts another service must have seen first
(passes for households just registered, gate decisions after a seal), the demo waits until every
service has caught up (``cordon.sys.health``: outboxes empty, consumers at lag 0).
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from services.demo import afternoon, city_list, gates, logistics, morning, qlists, screening
from services.demo import registry as registry_day
from services.demo.book import Book
from services.demo.client import Api, Call, Tally, cmd
from services.demo.plan import DAY, EVE, DayPlan, Passage, at, gate_staff, spread
from services.demo.street import Street

OFFICE = "staff:{committee}-office"


def iso(t: datetime) -> str:
    return t.isoformat()


def committee_of(community: str) -> str:
    return community.rsplit(".", 1)[1]


class Progress:
    """One line per phase on stderr: what was sent, what was accepted, how fast."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def phase(self, name: str, tally: Tally, note: str = "") -> None:
        errors = ", ".join(f"{k} ×{n}" for k, n in sorted(tally.errors.items()))
        self.line(f"  {name:<34} {tally.sent:>6,} sent {tally.ok:>6,} ok {tally.rate:>7,.0f}/s "
                  f"{tally.seconds:>6.1f} s" + (f"  {note}" if note else "")
                  + (f"  refused: {errors}" if errors else ""))


@dataclass
class Played:
    """What the demo sent and what came of it."""

    sent: Counter = field(default_factory=Counter)  # command -> requests sent
    accepted: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)  # gate reason (or "allowed") -> n
    unintended: list[tuple[dict, dict]] = field(default_factory=list)  # (passage, decision) not as planned
    notes: list[str] = field(default_factory=list)  # where the services' answers differ from the plan
    seconds: float = 0.0
    settle_seconds: float = 0.0

    @property
    def commands(self) -> int:
        return sum(self.sent.values())


class Demo:
    """The day's player: sends each phase (:mod:`~services.demo.morning`, :mod:`~services.demo.afternoon`),
    books what was accepted, and remembers what later phases need (passes, vouchers)."""

    def __init__(self, api: Api, street: Street, plan: DayPlan, progress: Progress | None = None):
        self.api = api
        self.street = street
        self.plan = plan
        self.progress = progress or Progress()
        self.book = Book()
        self.played = Played()
        self.passes: dict[str, dict] = {}  # household -> {"pass", "number"}
        self.old_number: str | None = None
        self.vouchers: list[tuple] = []  # (Masks, number)

    # -- plumbing -------------------------------------------------------------------------------

    def call(self, service: str, command: str, when: datetime, actor: str, key: str, /, **body) -> Call:
        """A command with a deterministic id (``demo:<seed tag>:<command>:<key>``) at ``when`` by ``actor``."""
        return cmd(service, command, command_id=f"demo:{self.street.tag}:{command}:{key}", actor=actor,
                   occurred_at=iso(when), **body)

    async def run(self, title: str, calls: list[Call], on_ok: Callable[[Call, dict], None] | None = None,
                  on_reply: Callable[[Call, dict], None] | None = None,
                  note: Callable[[], str] | None = None) -> list[dict]:
        """Send a phase's calls, book the accepted ones (``on_ok``), print the phase's line."""
        tally = Tally()
        replies = await self.api.many(calls, tally=tally)
        for c, reply in zip(calls, replies):
            self.played.sent[c.name] += 1
            if reply.get("ok"):
                self.played.accepted[c.name] += 1
                if on_ok:
                    on_ok(c, reply)
            if on_reply:
                on_reply(c, reply)
        self.progress.phase(title, tally, note() if note else "")
        return replies

    async def settle(self) -> None:
        t0 = time.perf_counter()
        await self.api.settle()
        self.played.settle_seconds += time.perf_counter() - t0

    def office(self, community: str) -> str:
        return OFFICE.format(committee=committee_of(community))

    # -- the day --------------------------------------------------------------------------------

    async def play(self) -> Played:
        t0 = time.perf_counter()
        self.progress.line(f"cordon demo: {self.street.community('*')} on {DAY} (Asia/Shanghai), seed "
                           f"{self.street.seed}, scale {self.street.scale:g}")
        await self.register_street()
        await self.settle()
        await self.play_morning()
        await self.settle()
        await self.play_afternoon()
        await self.settle()
        await self.play_evening()
        await self.settle()
        self.played.seconds = time.perf_counter() - t0
        return self.played

    async def register_street(self) -> None:
        s, when = self.street, spread
        cs = s.compounds
        await self.run("compounds registered", [
            self.call("registry", "register_compound", t, self.office(c.community), c.id, community=c.community,
                      compound=c.id, name=c.plan.name, buildings=c.buildings, gates=c.gates)
            for c, t in zip(cs, when(len(cs), at("19:00", EVE), at("19:05", EVE)))])
        hs = s.households
        await self.run("households registered", [
            self.call("registry", "register_household", t, self.office(h.compound.community), h.id,
                      community=h.compound.community, compound=h.compound.id, building=h.building,
                      address=h.address, household=h.id)
            for h, t in zip(hs, when(len(hs), at("19:05", EVE), at("20:00", EVE)))],
            on_ok=lambda c, r: self.book.household(c.body["community"], c.body["household"]))
        community = {h.id: h.compound.community for h in hs}
        rs = s.residents
        await self.run("residents registered", [
            self.call("registry", "register_resident", t, self.office(community[r.household]), r.id,
                      household=r.household, name=r.name, id_number=r.id_number, birth_year=r.birth_year,
                      vulnerabilities=list(r.vulnerabilities), resident=r.id,
                      **({"phone": r.phone} if r.phone else {}))
            for r, t in zip(rs, when(len(rs), at("20:00", EVE), at("21:30", EVE)))],
            on_ok=lambda c, r: self.book.resident(community[c.body["household"]], c.body["resident"]))

    async def play_morning(self) -> None:
        await morning.gates(self)
        await morning.passes(self)
        await morning.stock(self)
        await morning.arrivals(self)
        await city_list.arrivals_list(self)
        await morning.reserve_masks(self)
        await morning.verify(self)
        await morning.close_contacts(self)
        await morning.seal(self)

    async def play_afternoon(self) -> None:
        await logistics.play(self)
        await afternoon.requests(self)
        await afternoon.gate_traffic(self)
        await self.settle()  # fevers open monitoring cases; daily food requests are raised
        await afternoon.deliveries(self)
        await afternoon.checkins(self)
        await qlists.work_lists(self)
        await afternoon.redeem(self)

    async def play_evening(self) -> None:
        await screening.round_(self)
        await afternoon.missed_checkins(self)
        await gates.play(self)  # the gate's other work (issue 17)
        await afternoon.late_arrivals(self)
        await afternoon.shifts_end(self)
        await registry_day.evening(self)

    # -- gate decisions -------------------------------------------------------------------------

    def passage_call(self, p: Passage, n: int) -> Call:
        body: dict = dict(community=p.compound.community, compound=p.compound.id, gate=p.gate,
                          direction=p.direction, temperature_c=p.temperature_c, passage=f"{p.compound.id}-p{n:05d}")
        if p.pass_of is not None:
            body["pass"] = self.old_number if p.old_pass else self.passes[p.pass_of]["number"]
        if p.resident is not None:
            body["resident"] = p.resident
        if p.visitor is not None:
            body["visitor"] = p.visitor
        staff = gate_staff(p.compound, self.street.tag, p.gate, "am" if p.at.hour < 14 else "pm")
        return self.call("checkpoint", "check_passage", p.at, staff, body["passage"], **body)

    def decided(self, p: Passage, call: Call, reply: dict) -> None:
        if not reply.get("ok"):
            self.played.unintended.append((call.body, reply.get("error", {})))
            return
        decision = reply["decision"]
        reason = None if decision["allowed"] else decision["reason"]
        self.played.decisions[reason or "allowed"] += 1
        if reason != p.expect:
            self.played.unintended.append((call.body, decision))
        fever = any(e.get("type") == "FeverDetected" for e in reply.get("events", []))
        household = p.pass_of or (self.street_household(p.resident) if p.resident else None)
        self.book.passage(p.compound.community, p.direction, decision["allowed"], fever, p.resident, household)

    def street_household(self, resident: str) -> str:
        return resident.rsplit("-r", 1)[0]  # resident ids are <household>-r<n> (street.build)
