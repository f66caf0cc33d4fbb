"""`cordon load`: the demo's traffic as an open-loop load generator against a running Cordon.

Commands are sent at a fixed rate whatever the replies do (open loop), so a slow service shows
as latency, not as a politely lower rate. Latency is measured from the instant a command was due,
not from when it finally left (no coordinated omission). What is sent is drawn from ``--seed``:
the same seed sends the same sequence of kinds and targets; command ids carry a run id, so a
second run is new work (give ``--run-id`` to replay one instead).

Set-up data (a compound with households, residents, passes and stock, community
``changning.chengjiaqiao.load``) is created first with ids from the seed: on a Cordon that has it
already, the set-up replays stored replies and creates nothing. Only the public message API is
used (:mod:`services.demo.client`).

Kinds (``--mix kind=weight,...``): ``passage`` (a resident shows a pass at a gate), ``resident``
(named resident and pass), ``visitor`` (refused under closed management), ``arrival`` (a class-B
arrival, cleared on registration), ``request`` (a food request), ``masks`` (a mask reservation,
one per household and week up to the limit), ``household`` (a new household registered). Off by
default, the quarantine service's: ``case`` (home quarantine opened for a resident, refused
``case_open`` when one is open), ``checkin`` (a check-in of a case the set-up opened), ``sample``
(a sample taken in the set-up's screening round, refused ``already_sampled`` the second time),
``seal`` (the compound or its first building sealed or the seal lifted, at random: refused
``already_sealed`` or ``not_sealed`` when it is so already; each change starts or stops every
household's daily food there); with any of them the set-up schedules a screening round for the
day and opens a few cases.

A caller that needs each command and its reply (the fault suite re-sends those whose reply was
lost) gives :func:`drive` an ``on_reply``.
"""
from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable
from datetime import datetime, timedelta, timezone

from services.demo.client import Api, Call, cmd
from services.demo.street import People, seed_tag

COMMUNITY = "changning.chengjiaqiao.load"
CST = timezone(timedelta(hours=8))
DEFAULT_MIX = {"passage": 80, "resident": 5, "visitor": 2, "arrival": 5, "request": 4, "masks": 3, "household": 1}
#: The quarantine service's kinds: not in the default mix (whose figures the benchmarks compare).
QUARANTINE_KINDS = ("case", "checkin", "sample", "seal")
KINDS = (*DEFAULT_MIX, *QUARANTINE_KINDS)
#: Cases the set-up opens (check-ins go to them) when the mix has a quarantine kind.
SETUP_CASES = 10
MAX_IN_FLIGHT = 20_000  # beyond this the generator counts a command as dropped instead of sending it


def parse_mix(text: str | None) -> dict[str, int]:
    """``passage=80,masks=5`` -> weights; unknown kinds and bad weights are a ValueError."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, int] = {}
    for part in text.split(","):
        kind, _, weight = part.strip().partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} in --mix; kinds: {', '.join(KINDS)}")
        try:
            mix[kind] = int(weight or "1")
        except ValueError:
            raise ValueError(f"weight of {kind} must be a whole number, got {weight!r}") from None
        if mix[kind] < 0:
            raise ValueError(f"weight of {kind} must not be negative")
    if not any(mix.values()):
        raise ValueError("--mix needs at least one kind with a weight above 0")
    return mix


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank percentile ``p`` (0-100) of ascending values; 0 for none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Site:
    """The set-up data the generator draws targets from."""

    compound: str
    gates: list[str]
    households: list[str]
    residents: dict[str, str]  # resident -> household
    passes: dict[str, str] = field(default_factory=dict)  # household -> printed number
    community: str = COMMUNITY
    screening: str | None = None  # the day's screening round (quarantine kinds only)
    cases: list[str] = field(default_factory=list)  # cases open for check-ins (quarantine kinds only)


def site_for(seed: int, households: int, community: str = COMMUNITY, name: str | None = None) -> Site:
    """The set-up of ``households`` households (two residents each) in one compound of ``community``;
    ``name`` tells apart the compounds of several committees (``cordon load --committees``)."""
    compound = f"load-{seed_tag(seed)}-{name + '-' if name else ''}{households}"  # a compound per size: set-ups never mix
    hs = [f"{compound}-h{i + 1:05d}" for i in range(households)]
    return Site(compound, ["g1", "g2"], hs, {f"{h}-r{j}": h for h in hs for j in (1, 2)}, community=community)


async def setup(api: Api, site: Site | list[Site], seed: int, say=lambda line: None, quarantine: bool = False) -> None:
    """Create (or replay) the set-up data of one site or several; fills each ``site.passes`` (and,
    with ``quarantine``, the day's screening round and a few open cases: ``site.screening``,
    ``site.cases``). Each step is sent for every site at once, so many committees set up at the
    rate of one."""
    sites = site if isinstance(site, list) else [site]
    eve = datetime(2020, 2, 16, 20, 0, tzinfo=CST).isoformat()
    office = "staff:load-office"

    def c(service: str, command: str, key: str, /, **body) -> Call:
        return cmd(service, command, command_id=f"load-setup:{command}:{key}", actor=office, occurred_at=eve, **body)

    steps: list[list[Call]] = [[], [], []]
    for s in sites:
        people = People(random.Random(seed * 7919 + len(s.households)))  # ID numbers of its own per set-up
        if s.community != COMMUNITY:  # committees of a city: no two share an ID number
            people = People(random.Random(f"{seed}:{s.compound}"))
        buildings = [f"b{i + 1:02d}" for i in range(max(1, math.ceil(len(s.households) / 68)))]
        steps[0].append(c("registry", "register_compound", s.compound, community=s.community, compound=s.compound,
                          name="压测小区", buildings=buildings, gates=s.gates))
        steps[1] += [c("registry", "register_household", h, community=s.community, compound=s.compound,
                       building=buildings[i % len(buildings)], address=f"{i + 1}室", household=h)
                     for i, h in enumerate(s.households)]
        steps[2] += [c("registry", "register_resident", r, household=h, name=people.name(),
                       id_number=people.id_number(1960 + i % 50), birth_year=1960 + i % 50, resident=r)
                     for i, (r, h) in enumerate(s.residents.items())]
    for step in steps:
        await _must(api, step, say)
    await api.settle()
    final = await _must(api, [call for s in sites for call in (
        c("checkpoint", "set_control_level", s.compound, community=s.community, compound=s.compound,
          level="closed"),
        c("checkpoint", "issue_passes", s.compound, community=s.community, compound=s.compound,
          all_households=True),
        c("logistics", "receive_stock", s.compound, community=s.community, source="allocation",
          items=[{"item": "vegetable-pack", "qty": 100_000}, {"item": "masks", "qty": 100_000}]))], say)
    for s, issued in zip(sites, final[1::3]):
        s.passes = {p["household"]: p["number"] for p in issued["passes"]}
    for s in sites if quarantine else ():
        await _setup_quarantine(api, s, office)
    where = sites[0].community if len(sites) == 1 else f"{len(sites):,} committees"
    say(f"set-up: {sum(len(s.households) for s in sites):,} households, "
        f"{sum(len(s.residents) for s in sites):,} residents, {sum(len(s.passes) for s in sites):,} passes in {where}")


async def _must(api: Api, calls: list[Call], say) -> list[dict]:
    """Send a set-up step (with a line of progress when it is long); any refusal stops the set-up."""
    t0 = time.perf_counter()
    replies = await api.many(calls)
    bad = [r for r in replies if not r.get("ok")]
    if bad:
        raise RuntimeError(f"set-up {calls[0].name}: {len(bad)} refused, e.g. {bad[0]}")
    if len(calls) >= 1000:
        seconds = time.perf_counter() - t0
        say(f"set-up {calls[0].name}: {len(calls):,} in {seconds:.1f} s ({len(calls) / seconds:,.0f}/s)")
    return replies


async def _setup_quarantine(api: Api, site: Site, office: str) -> None:
    """Today's screening round and ``SETUP_CASES`` home-quarantine cases. They are about today, so
    their ids carry the day: a set-up replayed tomorrow creates tomorrow's (the same id with
    another body would be refused ``conflict``)."""
    now = datetime.now(CST)
    day = now.date().isoformat()
    tag = f"{site.compound}-{now:%Y%m%d}"
    site.screening = f"{tag}-screening"
    residents = [f"{h}-r1" for h in site.households[:SETUP_CASES]]
    site.cases = [f"{tag}-case-{i + 1}" for i in range(len(residents))]

    def c(command: str, key: str, /, **body) -> Call:
        return cmd("quarantine", command, command_id=f"load-setup:{command}:{key}", actor=office,
                   occurred_at=now.isoformat(), **body)

    replies = await api.many([
        c("schedule_screening", site.screening, community=site.community, compound=site.compound, on=day,
          screening=site.screening, slots=[{"label": "all day", "from": "00:00", "to": "23:59"}]),
        *(c("open_case", case, community=site.community, resident=r, kind="home", reason="close_contact",
            starts_on=day, case=case) for case, r in zip(site.cases, residents)),
    ])
    bad = [r for r in replies if not r.get("ok")]
    if bad:
        raise RuntimeError(f"set-up of quarantine: {len(bad)} refused, e.g. {bad[0]}")


class Generator:
    """The seeded sequence of commands of the mix, over one site or several (each command goes to a
    site drawn at random: committees of one size get equal shares)."""

    def __init__(self, site: Site | list[Site], mix: dict[str, int], seed: int, run: str):
        self.sites = site if isinstance(site, list) else [site]
        self.rng = random.Random(seed)
        self.people = People(random.Random(seed + 1))
        self.kinds, self.weights = zip(*[(k, w) for k, w in mix.items() if w > 0])
        self.run = run
        self.n = 0
        self._targets = [(list(s.residents), [h for h in s.households if h in s.passes]) for s in self.sites]
        self._choose(0)

    def _choose(self, i: int) -> None:
        self.site = self.sites[i]
        self.residents, self.with_pass = self._targets[i]

    def next(self, now: datetime) -> tuple[str, Call]:
        self.n += 1
        if len(self.sites) > 1:
            self._choose(self.rng.randrange(len(self.sites)))
        kind = self.rng.choices(self.kinds, self.weights)[0]
        common = dict(command_id=f"load:{self.run}:{self.n}", actor="volunteer:load", occurred_at=now.isoformat())
        return kind, getattr(self, f"_{kind}")(common)

    def _gate(self, common: dict, **who) -> Call:
        fever = self.rng.random() < 0.002
        temp = round(self.rng.uniform(37.4, 38.5) if fever else self.rng.uniform(36.0, 37.0), 1)
        return cmd("checkpoint", "check_passage", **common, community=self.site.community, compound=self.site.compound,
                   gate=self.rng.choice(self.site.gates), direction=self.rng.choice(("in", "out")),
                   temperature_c=temp, **who)

    def _passage(self, common: dict) -> Call:
        return self._gate(common, **{"pass": self.site.passes[self.rng.choice(self.with_pass)]})

    def _resident(self, common: dict) -> Call:
        resident = self.rng.choice(self.residents)
        household = self.site.residents[resident]
        return self._gate(common, resident=resident, **{"pass": self.site.passes[household]})

    def _visitor(self, common: dict) -> Call:
        return self._gate(common, visitor={"name": self.people.name(), "phone": "13800000000",
                                           "host_household": self.rng.choice(self.site.households), "purpose": "探望"})

    def _arrival(self, common: dict) -> Call:
        day = datetime.fromisoformat(common["occurred_at"]).date()
        return cmd("registry", "register_arrival", **common, resident=self.rng.choice(self.residents),
                   origin="江苏省苏州市", arrived_on=day.isoformat(), transport={"kind": "road"},
                   visited=[{"place": "苏州", "from": (day - timedelta(days=10)).isoformat(), "to": day.isoformat()}],
                   city_class="B", risk_area_visited=False)

    def _request(self, common: dict) -> Call:
        return cmd("logistics", "request_supplies", **common, community=self.site.community,
                   household=self.rng.choice(self.site.households), kind="food",
                   items=[{"item": "vegetable-pack", "qty": 1}])

    def _masks(self, common: dict) -> Call:
        return cmd("logistics", "reserve_masks", **common, community=self.site.community,
                   household=self.rng.choice(self.site.households), qty=1)

    def _household(self, common: dict) -> Call:
        return cmd("registry", "register_household", **common, community=self.site.community, compound=self.site.compound,
                   building="b01", address=f"加建 {self.n}")

    def _case(self, common: dict) -> Call:
        day = datetime.fromisoformat(common["occurred_at"]).date()
        return cmd("quarantine", "open_case", **common, community=self.site.community, resident=self.rng.choice(self.residents),
                   kind="home", reason="close_contact", starts_on=day.isoformat(), case=f"lc-{self.run}-{self.n}")

    def _checkin(self, common: dict) -> Call:
        day = datetime.fromisoformat(common["occurred_at"]).date()
        return cmd("quarantine", "record_checkin", **common, case=self.rng.choice(self.site.cases),
                   on=day.isoformat(), temperature_c=round(self.rng.uniform(36.0, 37.0), 1))

    def _seal(self, common: dict) -> Call:
        where = self.rng.choice(({}, {"building": "b01"}))  # one stream: the compound's seals
        return cmd("quarantine", self.rng.choice(("seal", "lift_seal")), **common, community=self.site.community,
                   compound=self.site.compound, **where)

    def _sample(self, common: dict) -> Call:
        return cmd("quarantine", "record_sample", **common, screening=self.site.screening,
                   resident=self.rng.choice(self.residents))


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    ok: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)  # "kind: code/reason"
    errors: Counter = field(default_factory=Counter)  # timeouts, unavailable, internal, invalid, ...
    sent: int = 0
    dropped: int = 0
    seconds: float = 0.0

    def record(self, kind: str, latency: float, reply: dict | None, error: str | None = None) -> None:
        self.latencies.setdefault(kind, []).append(latency)
        if reply is None:
            self.errors[f"{kind}: {error}"] += 1
        elif reply.get("ok"):
            self.ok[kind] += 1
        else:
            err = reply.get("error") or {}
            key = f"{kind}: {err.get('code')}" + (f"/{err['reason']}" if err.get("reason") else "")
            # Domain refusals are answers (e.g. a mask limit reached); the rest are failures.
            (self.rejected if err.get("code") in ("rejected", "conflict") else self.errors)[key] += 1

    def summary(self, rate: float, duration: float, seed: int, run: str) -> dict:
        done = sum(len(v) for v in self.latencies.values())
        kinds = {}
        for kind, values in sorted(self.latencies.items()):
            values.sort()
            kinds[kind] = {"n": len(values), "ok": self.ok[kind],
                           **{f"p{p}_ms": round(percentile(values, p) * 1000, 2) for p in (50, 90, 99)},
                           "max_ms": round(values[-1] * 1000, 2)}
        everything = sorted(x for v in self.latencies.values() for x in v)
        return {
            "bench": "cordon load", "seed": seed, "run": run, "rate_target": rate, "duration_s": duration,
            "sent": self.sent, "completed": done, "dropped": self.dropped,
            "rate_achieved": round(done / self.seconds, 1) if self.seconds else 0.0,
            "ok": sum(self.ok.values()), "rejected": dict(self.rejected), "errors": dict(self.errors),
            **{f"p{p}_ms": round(percentile(everything, p) * 1000, 2) for p in (50, 90, 99)},
            "max_ms": round(everything[-1] * 1000, 2) if everything else 0.0, "kinds": kinds,
        }


async def settle(nc, say, timeout: float = 300.0, every: float = 2.0) -> None:
    """Until every service has published its outbox and every consumer and follower has applied
    the stream (``cordon.qry.health``): a large set-up leaves the others' directories and the views
    applying its events for a while, and a measurement taken meanwhile measures that."""
    loop = asyncio.get_running_loop()
    start = last_said = loop.time()
    while True:
        try:
            reply = json.loads((await nc.request("cordon.qry.health", b"{}", timeout=5.0)).data)
            behind = {f"{r.get('service')}.{name}": c.get("lag") for r in reply.get("results", [])
                      for name, c in (r.get("consumers") or {}).items() if not c.get("standby")}
            behind.update({f"{r.get('service')}.outbox": r.get("outbox_depth") for r in reply.get("results", [])
                           if "outbox_depth" in r})
        except Exception as exc:  # health unreachable for a moment: look again
            behind = {"health": f"{type(exc).__name__}"}
        waiting = {k: v for k, v in behind.items() if v != 0}
        if not waiting:
            say(f"settled: every outbox published and every consumer caught up ({loop.time() - start:.1f} s)")
            return
        if loop.time() - start > timeout:
            say(f"not settled after {timeout:g} s, measuring anyway: {waiting}")
            return
        if loop.time() - last_said >= 10 * every:
            last_said = loop.time()
            say(f"settling: {sum(v for v in waiting.values() if isinstance(v, int)):,} still to apply "
                f"({', '.join(sorted(waiting)[:4])}{', …' if len(waiting) > 4 else ''})")
        await asyncio.sleep(every)


#: on_reply(kind, call, reply): each command as its reply comes; ``reply`` None when none came (a
#: timeout, no responders, NATS away).
OnReply = Callable[[str, Call, "dict | None"], None]


async def drive(api: Api, gen: Generator, rate: float, duration: float, timeout: float = 10.0,
                tick: float = 0.005, on_reply: OnReply | None = None,
                clock: Callable[[], datetime] = lambda: datetime.now(CST)) -> Stats:
    """Send ``rate`` commands a second for ``duration`` seconds, open loop; wait for the replies.
    Each is sent once: a lost reply is only counted (and handed to ``on_reply``). Commands are
    stamped with ``clock()`` (simulated time, for ``--committees``)."""
    stats = Stats()
    pending: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    total = int(rate * duration)
    start = loop.time()

    async def one(kind: str, call: Call, due: float) -> None:
        due = min(due, loop.time())  # sent a tick early: count from the send, never below zero
        payload = json.dumps(call.body, ensure_ascii=False).encode()
        try:
            msg = await api.nc.request(call.subject, payload, timeout=timeout)
            reply = json.loads(msg.data)
            stats.record(kind, loop.time() - due, reply)
        except Exception as exc:  # a timeout or no responders: an error of this kind
            reply = None
            stats.record(kind, loop.time() - due, None, type(exc).__name__)
        if on_reply is not None:
            on_reply(kind, call, reply)

    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > tick:
            await asyncio.sleep(delay)
        kind, call = gen.next(clock())
        if len(pending) >= MAX_IN_FLIGHT:
            stats.dropped += 1
            continue
        task = asyncio.ensure_future(one(kind, call, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        stats.sent += 1
    if pending:
        await asyncio.wait(pending)
    stats.seconds = max(loop.time() - start, duration)  # replies that lag behind lower the rate
    return stats


def render(summary: dict) -> str:
    from services.demo.tables import table

    rows = [(k, v["n"], v["ok"], v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"])
            for k, v in summary["kinds"].items()]
    rows.append(("all", summary["completed"], summary["ok"], summary["p50_ms"], summary["p90_ms"],
                 summary["p99_ms"], summary["max_ms"]))
    lines = [f"cordon load: target {summary['rate_target']:g}/s for {summary['duration_s']:g} s -> achieved "
             f"{summary['rate_achieved']:,}/s ({summary['completed']:,} replies, {summary['dropped']} dropped)",
             table(("kind", "n", "ok", "p50 ms", "p90 ms", "p99 ms", "max ms"), rows)]
    if "committees" in summary:
        lines.insert(1, f"  {summary['committees']:,} committees ({summary['real_rate']:,}/s in real time), time "
                        f"compressed {summary['speed']:,.4g}×: {summary['simulated_days']:,} simulated days")
    for title, counts in (("rejected (domain answers)", summary["rejected"]), ("errors", summary["errors"])):
        if counts:
            lines.append(f"{title}: " + ", ".join(f"{k} ×{n}" for k, n in sorted(counts.items())))
    return "\n".join(lines)


async def run_load(url: str, creds: str | None = None, *, rate: float | None = None, duration: float,
                   warmup: float = 0.0, seed: int = 7,
                   mix: dict[str, int] | None = None, households: int | None = None, run: str | None = None,
                   committees: int | None = None, speed: float | None = None, days: float | None = None,
                   say=lambda line: None) -> dict:
    """Set up (or reuse) the data, then measure; the summary dict (also the last JSON line).
    With ``committees``, the rate is theirs (:mod:`services.demo.city`), compressed by ``speed``
    (or to fit ``days`` simulated days, the warm-up included), and commands carry simulated times.
    ``warmup`` seconds of the same load go first and are not counted."""
    from services.demo import city

    mix = mix or dict(DEFAULT_MIX)
    plan = None
    if committees is not None:
        if rate is not None:
            raise ValueError("--committees sets the rate: give one or the other")
        if any(mix.get(k) for k in QUARANTINE_KINDS):
            raise ValueError("the quarantine kinds are not offered with --committees (their set-up is dated today)")
        plan = city.Plan.of(committees, warmup + duration, speed, days)
        rate = plan.rate
        say(plan.describe())
    elif rate is None:
        raise ValueError("give --rate, or --committees")
    api = await Api.connect(url, creds, in_flight=256)
    try:
        if plan is not None:
            site: Site | list[Site] = city.sites(seed, committees, households or city.HOUSEHOLDS)
        else:
            site = site_for(seed, households or 1000)
        await setup(api, site, seed, say, quarantine=any(mix.get(k) for k in QUARANTINE_KINDS))
        await settle(api.nc, say)
        run = run or format(int(time.time() * 1000) % 0xFFFFFFFF, "x")
        gen = Generator(site, mix, seed, run)
        clock = plan.clock(lambda: datetime.now(CST), time.monotonic) if plan else (lambda: datetime.now(CST))
        if warmup:
            say(f"warm-up: {warmup:g} s at {rate:,.4g}/s, not counted")
            await drive(api, gen, rate, warmup, clock=clock)
        stats = await drive(api, gen, rate, duration, clock=clock)
        summary = stats.summary(rate, duration, seed, run)
        summary["warmup_s"] = warmup
        if plan is not None:
            summary.update(committees=plan.committees, speed=plan.speed, real_rate=round(plan.real_rate, 2),
                           simulated_days=round(plan.simulated.total_seconds() / city.DAY_SECONDS, 3))
        return summary
    finally:
        await api.close()
