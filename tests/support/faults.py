"""The fault suite's parts: a whole Cordon as real processes (each service once or twice, as
`cordon service NAME` runs it), a steady mixed load that keeps every command with its reply, and
the checks made once a fault has passed.

What the checks hold a run to:

- answered: every command of the load ends with an acceptable reply. A command whose reply was
  lost (no reply: the service or NATS was killed, or ``unavailable``: PostgreSQL was away) is sent
  again with the same ``command_id`` and body. Acceptable is ``ok``, or the refusal its kind meets
  anyway as the state moves on under the load (:data:`REFUSALS`: a mask reservation past the
  limit, a second case for a resident, a second sample in a round, sealing what is sealed): sent
  again, a command that had not been applied is decided now, after commands sent later, so it may
  meet the refusal a later one would have. Anything else (``conflict``, ``internal``, ``invalid``,
  still no reply) fails.
- once: the events the record holds for a command (its ``causation_id``) are exactly those of its
  final reply: an accepted command's events all recorded, a refused one's none, none applied twice
  (a second run of a command makes events of its own, under the same command id). Sent once
  more, an accepted command gets the reply it had and records nothing; a refused one, whose reply
  is not kept, is decided again and, if accepted now, records its events once.
- settled, then reconciled: every outbox empty, every durable consumer with nothing pending or
  unacknowledged, the views and the audit log at the stream's last sequence; then
  ``cordon reconcile`` of everything finds no difference (record = stream, each stream's versions
  in order, every consumer's inbox and local copies against a replay, the audit log, the views
  against a shadow built from the stream).
- in order everywhere: each durable consumer applied each stream's events in stream order (its
  inbox rows, by the time their batch committed), and the audit log holds the stream in its order.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from services.demo import load, system
from services.demo.client import Api, Call
from services.ops.cli import reconcile_all
from services.ops.reconcile import CHECKED
from services.supervisor import service_env, wait_ready
from services.views import schema as views_schema
from shared.service import gather_health
from shared.subjects import STREAM
from tests.support.bus import authority_for, connect, creds_for, operator_config
from tests.support.cordon import eventually

SERVICES = ("registry", "checkpoint", "quarantine", "logistics", "views", "audit")
COMMAND_SERVICES = ("registry", "checkpoint", "quarantine", "logistics")
#: Every command service's commands, not mostly gate checks as in `cordon load`'s default mix.
MIX = {"passage": 30, "resident": 5, "visitor": 2, "arrival": 8, "household": 5, "request": 10, "masks": 10,
       "case": 5, "checkin": 11, "sample": 10, "seal": 4}
#: The only refusals a kind of the load meets (``rejected`` with one of these reasons): the others
#: are always accepted (a gate check answers with its decision, class-B arrivals are cleared, the
#: stock is far beyond the requests).
REFUSALS = {"masks": {"limit_reached"}, "case": {"case_open"}, "sample": {"already_sampled"},
            "seal": {"already_sealed", "not_sealed"}}
HOUSEHOLDS = 60
SEED = 7


def environment(nats_url: str, pg_dsn: str) -> dict[str, str]:
    # The load's set-up is dated the evening of 16 February 2020: no bound on backdating.
    return {**os.environ, "CORDON_NATS_URL": nats_url, "CORDON_PG_DSN": pg_dsn, "CORDON_LOG_FORMAT": "json",
            "CORDON_LOG_LEVEL": "warning", "CORDON_BACKDATE_DAYS": "0",
            "CORDON_METRICS_PORT": "0"}  # several instances of each service on one machine



class Cordon:
    """Service processes on the test's servers; ``kill`` is ``kill -9``."""

    def __init__(self, nats_url: str, pg_dsn: str, log_dir: Path):
        self.nats_url, self.pg_dsn, self.log_dir = nats_url, pg_dsn, log_dir
        self.env = environment(nats_url, pg_dsn)
        self.procs: dict[str, list[asyncio.subprocess.Process]] = {}
        self.killed: set[int] = set()
        self.spawned = 0

    async def start(self, names=SERVICES, replicas: int = 1) -> None:
        for _ in range(replicas):
            for name in names:
                await self.spawn(name)
        await self.ready(names, replicas)

    async def spawn(self, name: str) -> asyncio.subprocess.Process:
        self.spawned += 1
        env = service_env(self.env, name, authority_for(self.nats_url))  # its own credentials
        proc = await system._spawn(name, env, self.log_dir, log_name=f"{name}-{self.spawned}")
        self.procs.setdefault(name, []).append(proc)
        return proc

    async def kill(self, name: str, proc: asyncio.subprocess.Process | None = None) -> None:
        """SIGKILL one instance of ``name`` (the first unless ``proc``): no goodbye, no clean-up."""
        proc = proc or self.alive(name)[0]
        self.killed.add(proc.pid)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    def alive(self, name: str) -> list[asyncio.subprocess.Process]:
        return [p for p in self.procs.get(name, []) if p.returncode is None]

    def died(self) -> list[str]:
        """Instances that exited though nobody killed them (a crash the test did not cause)."""
        return [f"{name} (pid {p.pid}, exit {p.returncode}; see {self.log_dir})" for name, procs in self.procs.items()
                for p in procs if p.returncode is not None and p.pid not in self.killed]

    async def ready(self, names=SERVICES, replicas: int = 1, timeout: float = 60.0) -> None:
        """Every service in ``names`` answering health with ``replicas`` instances."""
        await wait_ready(self.nats_url, list(names), timeout=timeout, creds=creds_for(self.nats_url))
        if replicas > 1:
            async def all_there() -> bool:
                health = await self.health()
                return all(len(health.get(n, ())) >= replicas for n in names)
            await eventually(all_there, timeout, f"{replicas} instances of {', '.join(names)}")

    async def health(self, wait: float = 0.3) -> dict[str, list[dict]]:
        """Each running instance's status, by service (those that answered within ``wait``)."""
        nc = await connect(self.nats_url)
        try:
            return (await gather_health(nc, wait=wait))["services"]
        finally:
            await nc.close()

    async def stop(self) -> None:
        await asyncio.gather(*(system._stop(p) for procs in self.procs.values() for p in procs),
                             return_exceptions=True)


@dataclass
class Sent:
    """One command of the load and the last reply it got (None: none came)."""

    kind: str
    call: Call
    reply: dict | None
    again: int = 0  # times sent again (a lost reply; a refusal, once the load is over)

    @property
    def command_id(self) -> str:
        return self.call.body["command_id"]

    @property
    def lost(self) -> bool:
        return self.reply is None or (self.reply.get("error") or {}).get("code") == "unavailable"

    def acceptable(self) -> bool:
        if self.reply is None:
            return False
        if self.reply.get("ok"):
            return True
        error = self.reply.get("error") or {}
        return error.get("code") == "rejected" and error.get("reason") in REFUSALS.get(self.kind, ())


@dataclass
class Load:
    """The demo's load generator over every command service, each command kept with its reply."""

    api: Api
    run: str
    sent: list[Sent] = field(default_factory=list)
    site: load.Site | None = None

    @classmethod
    async def set_up(cls, nats_url: str, run: str) -> "Load":
        api = await Api.connect(nats_url, creds_for(nats_url), in_flight=64, timeout=5.0, attempts=8)
        site = load.site_for(SEED, HOUSEHOLDS)
        await load.setup(api, site, SEED, quarantine=True)
        await api.settle(timeout=60)  # the directories know every resident before the load starts
        return cls(api, run, site=site)

    async def drive(self, rate: float, duration: float) -> None:
        """Open loop: ``rate`` commands a second; a reply not there within 2 s is counted lost."""
        def keep(kind: str, call: Call, reply: dict | None) -> None:
            self.sent.append(Sent(kind, call, reply))

        gen = load.Generator(self.site, MIX, SEED, self.run)
        await load.drive(self.api, gen, rate, duration, timeout=2.0, on_reply=keep)

    def lost(self) -> list[Sent]:
        return [s for s in self.sent if s.lost]

    async def send_lost_again(self) -> int:
        """Send every command whose reply was lost again, same id and body (retried while it gets
        no reply or ``unavailable``); how many there were."""
        lost = self.lost()
        for s, reply in zip(lost, await self.api.many([s.call for s in lost])):
            s.reply, s.again = reply, s.again + 1
        return len(lost)

    def unacceptable(self) -> list[Sent]:
        return [s for s in self.sent if not s.acceptable()]

    async def send_all_again(self) -> list[str]:
        """Every command sent once more. An accepted one must get its stored reply, word for word;
        a refused one is decided again (only accepted commands' replies are kept: a refusal holds
        for the state it met) and must again get an acceptable reply, which becomes its reply.
        What breaks that is named."""
        out = []
        for s, reply in zip(self.sent, await self.api.many([s.call for s in self.sent])):
            if s.reply.get("ok") and reply != s.reply:
                out.append(f"{s.command_id} ({s.kind}): first {json.dumps(s.reply)[:300]}, "
                           f"then {json.dumps(reply)[:300]}")
            elif not s.reply.get("ok"):
                s.reply, s.again = reply, s.again + 1
                if not s.acceptable():
                    out.append(f"{s.command_id} ({s.kind}) sent again: {json.dumps(reply)[:300]}")
        return out

    def summary(self) -> str:
        ok = sum(1 for s in self.sent if s.reply and s.reply.get("ok"))
        lost = sum(1 for s in self.sent if s.again)
        kinds = {s.kind for s in self.sent}
        return (f"{len(self.sent)} commands of {len(kinds)} kinds, {lost} sent again after a lost reply, "
                f"{ok} accepted, {len(self.sent) - ok} refused")

    async def close(self) -> None:
        await self.api.close()


# -- after the fault ---------------------------------------------------------------------------


async def moving(pg_dsn: str, nats_url: str) -> list[str]:
    """What has not caught up yet: outboxes, durable consumers, the views and the audit log (empty
    when all is still)."""
    out = []
    conn = await asyncpg.connect(pg_dsn)
    nc = await connect(nats_url)
    try:
        for service in COMMAND_SERVICES:
            if n := await conn.fetchval(f"SELECT count(*) FROM {service}.outbox"):
                out.append(f"{service}: {n} in the outbox")
        js = nc.jetstream()
        last = (await js.stream_info(STREAM)).state.last_seq
        for info in await js.consumers_info(STREAM):
            if info.config.durable_name and (info.num_pending or info.num_ack_pending):
                out.append(f"consumer {info.name}: {info.num_pending} pending, {info.num_ack_pending} unacknowledged")
        generation = await conn.fetchval("SELECT generation FROM views.current")
        views = await conn.fetchval(f"SELECT hwm FROM {views_schema.name(generation)}.meta")
        audit = await conn.fetchval("SELECT hwm FROM audit.head")
        for name, hwm in (("views", views), ("audit", audit)):
            if hwm != last:
                out.append(f"{name} at sequence {hwm} of {last}")
    finally:
        await nc.close()
        await conn.close()
    return out


async def settle(pg_dsn: str, nats_url: str, timeout: float = 30.0) -> None:
    """Wait until nothing moves, twice in a row (a reaction's command adds to an outbox only after
    its event was consumed)."""
    calm, last = 0, ["not looked yet"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while calm < 2:
        last = await moving(pg_dsn, nats_url)
        calm = 0 if last else calm + 1
        assert loop.time() < deadline, f"not settled after {timeout:g} s: {'; '.join(last)}"
        await asyncio.sleep(0.1)


async def recorded_by_command(pg_dsn: str, prefix: str) -> dict[str, list[str]]:
    """The event ids each command recorded, by command id (its events' ``causation_id``), for the
    commands whose id starts with ``prefix``, across every command service's record."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        out: dict[str, list[str]] = {}
        for service in COMMAND_SERVICES:
            for row in await conn.fetch(
                    f"""SELECT convert_from(envelope, 'UTF8')::jsonb ->> 'causation_id' AS command, event_id::text
                        FROM {service}.events
                        WHERE convert_from(envelope, 'UTF8')::jsonb ->> 'causation_id' LIKE $1 || '%'""", prefix):
                out.setdefault(row["command"], []).append(row["event_id"])
        return out
    finally:
        await conn.close()


def once(sent: list[Sent], recorded: dict[str, list[str]]) -> list[str]:
    """Each command's recorded events against its final reply's: the differences."""
    out = []
    for s in sent:
        replied = sorted(e["event_id"] for e in (s.reply or {}).get("events", ()))
        held = sorted(recorded.get(s.command_id, ()))
        if replied != held:
            out.append(f"{s.command_id} ({s.kind}, sent again {s.again}x): the reply has {len(replied)} events "
                       f"{replied}, the record {len(held)} {held}")
    return out


async def reconciled(nats_url: str, pg_dsn: str) -> tuple[int, str]:
    """`cordon reconcile` of everything it checks (the record, the stream, every consumer's inbox
    and local copies, the audit log, the views): its exit code and report."""
    out = io.StringIO()
    code = await reconcile_all(operator_config(nats_url, pg_dsn=pg_dsn), CHECKED, out=out, err=io.StringIO())
    return code, out.getvalue()


async def consumers_out_of_order(pg_dsn: str) -> list[str]:
    """Events a durable consumer applied in a batch committed before that of an earlier event of the
    same stream (the inbox keeps when each batch committed)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        streams = " UNION ALL ".join(f"SELECT event_id, stream_id, version FROM {s}.events" for s in COMMAND_SERVICES)
        out = []
        for schema in COMMAND_SERVICES:
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.inbox"):
                continue
            rows = await conn.fetch(f"""
                SELECT consumer, stream_id, version, stream_seq, consumed_at, prev_at, prev_version FROM (
                    SELECT i.consumer, e.stream_id, e.version, i.stream_seq, i.consumed_at,
                           lag(i.consumed_at) OVER w AS prev_at, lag(e.version) OVER w AS prev_version
                    FROM {schema}.inbox i JOIN ({streams}) e USING (event_id)
                    WHERE NOT i.parked
                    WINDOW w AS (PARTITION BY i.consumer, e.stream_id ORDER BY i.stream_seq)) x
                WHERE consumed_at < prev_at OR version < prev_version""")
            out += [f"consumer {r['consumer']}: {r['stream_id']} v{r['version']} (sequence {r['stream_seq']}) applied "
                    f"before v{r['prev_version']}" for r in rows]
        return out
    finally:
        await conn.close()


async def audit_out_of_order(pg_dsn: str) -> list[str]:
    """Audit log rows whose stream sequence is not above the row before (no rewinds happen here)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("""
            SELECT n, stream_seq, prev FROM (
                SELECT n, stream_seq, lag(stream_seq) OVER (ORDER BY n) AS prev FROM audit.log) x
            WHERE stream_seq <= prev""")
        return [f"audit: row {r['n']} holds sequence {r['stream_seq']} after {r['prev']}" for r in rows]
    finally:
        await conn.close()
