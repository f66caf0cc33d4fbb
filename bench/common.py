"""What every bench script shares: the run-print-exit frame (:func:`run`), the percentile
(:func:`pct`), the command reply (:class:`Reply`), what one run starts (:class:`BenchBase`: a temp
dir, embedded NATS and PostgreSQL, child processes) and the raw JetStream and PostgreSQL limits
(:func:`raw_js`, :func:`raw_pg`).

NATS runs with authentication on, as ``cordon up`` runs it: every process of a run connects with
``CORDON_NATS_CREDS`` (:func:`connect`), the operators' credentials, and each service with its own.

Scripts put the repository root on ``sys.path`` before ``from bench import common``.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import asyncpg
import msgspec
import nats
from nats.js.api import StorageType, StreamConfig

from shared import bus
from services.supervisor import master_key_env
from shared.auth import Authority
from shared.embedded import EmbeddedNats, EmbeddedPostgres, ensure_database, pdeathsig

ROOT = Path(__file__).resolve().parent.parent
now = time.perf_counter


def run(bench, table: Callable[[dict], str], extra: dict | None = None, digits: int = 3) -> int:
    """Run ``bench.run()`` (then ``bench.stop()``), always ``bench.kill()`` what is left; print
    ``table(r)``, then ``r`` as one JSON line (floats rounded to ``digits``)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    async def go() -> dict:
        try:
            return await bench.run()
        finally:
            await bench.stop()

    try:
        r = asyncio.run(go())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.kill()  # whatever is left: services, servers, temp dir
    r.update(extra or {})
    print(table(r))
    print(json.dumps({k: round(v, digits) if isinstance(v, float) else v for k, v in r.items()},
                     ensure_ascii=False))
    return 1 if r.get("errors") else 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc): robust to a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile of ``values`` (seconds), in milliseconds, by nearest rank; None if empty.

    The rank is ``round(p / 100 * n + 0.5)`` clamped to 1..n: the nearest rank ⌈p/100·n⌉, except
    that Python's round-half-to-even makes it one higher when p/100·n is an odd whole number (with
    n = 100, p99 is the maximum). backbone.py has always computed it so; kept for comparable figures.
    """
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))] * 1000


class Reply(msgspec.Struct):
    """A command's reply: the fields the benches read (the others are skipped when decoding)."""
    ok: bool
    error: dict | None = None
    voucher: str | None = None  # logistics' reserve_masks


decode_reply = msgspec.json.Decoder(Reply).decode


class BenchBase:
    """What one run starts, so that :meth:`kill` can end it synchronously whatever happened: a temp
    dir, embedded NATS and PostgreSQL in it (durable defaults: fsync and synchronous_commit on,
    JetStream file storage), and child processes (:meth:`spawn`, :meth:`service`) logging to files
    there. A subclass writes ``async run() -> dict`` for :func:`run`."""

    def __init__(self, prefix: str):
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.authority = Authority.open(self.tmp / "auth")
        self.nats = EmbeddedNats(self.tmp / "nats", authority=self.authority)
        # This process and every child connect as an operator unless told otherwise (services are).
        os.environ["CORDON_NATS_CREDS"] = str(self.authority.admin_creds())
        self.pg = EmbeddedPostgres(self.tmp / "pg")
        self.children: list[subprocess.Popen] = []
        self.spies: list[subprocess.Popen] = []
        self.dsn: str | None = None

    async def start_servers(self, database: str = "cordon") -> str:
        """Start NATS and PostgreSQL; return the dsn of ``database`` (created if missing)."""
        await self.nats.start()
        await self.pg.start()
        self.dsn = await ensure_database(self.pg.dsn, database)
        return self.dsn

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              stdout=None) -> subprocess.Popen:
        """Start ``argv`` in the repository with ``CORDON_NATS_URL``, ``CORDON_PG_DSN`` (once the
        servers are up), log level warning and JSON logs, then ``env``; output to
        ``<tmp>/<name>.log`` (stderr only when ``stdout`` is given, e.g. ``subprocess.PIPE``).
        The child has its own session (a Ctrl-C reaches only us) and dies with this process."""
        env = {**os.environ, "CORDON_NATS_URL": self.nats.url, "CORDON_LOG_LEVEL": "warning",
               "CORDON_LOG_FORMAT": "json", **({"CORDON_PG_DSN": self.dsn} if self.dsn else {}), **(env or {})}
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log if stdout is None else stdout,
                stderr=subprocess.STDOUT if stdout is None else log, start_new_session=True,
                preexec_fn=pdeathsig(signal.SIGTERM, os.getpid()))
        self.children.append(proc)
        return proc

    def service(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``cordon service NAME`` as ``cordon up`` runs it (``python -m services.cli service NAME``),
        with its own credentials."""
        # No metrics port: a bench may run several services, and nothing scrapes them (the figures
        # are still counted per command, as in production).
        env = {"CORDON_NATS_CREDS": str(self.authority.service_creds(name)), "CORDON_METRICS_PORT": "0",
               **master_key_env(self.tmp), **(env or {})}  # the registry's master key, as cordon up makes it
        return self.spawn(name, [sys.executable, "-m", "services.cli", "service", name], env)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of child ``name``'s log."""
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-chars:]

    async def stop_children(self, *procs: subprocess.Popen, timeout: float = 10.0) -> None:
        """SIGTERM ``procs`` (default: every child), wait up to ``timeout`` s for them to exit,
        then SIGKILL the process group of any still running."""
        procs = procs or tuple(self.children)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # a service drains and closes its pool
        deadline = now() + timeout
        while any(proc.poll() is None for proc in procs) and now() < deadline:
            await asyncio.sleep(0.02)
        self._sigkill(procs)

    async def stop(self) -> None:
        """Stop every child gracefully, then PostgreSQL and NATS."""
        await self.stop_children()
        self.kill_children()
        await self.pg.stop()
        await self.nats.stop()

    @staticmethod
    def _sigkill(procs) -> None:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # session leader: pgid == pid
                except ProcessLookupError:
                    pass
                proc.wait()

    def spy(self, pid: int, seconds: float | None, out: Path, children: bool = False) -> None:
        """py-spy ``pid`` (and its child processes, if ``children``) for ``seconds`` (None: until
        it ends) into ``out`` (collapsed stacks, each line's first frame naming the process)."""
        exe = Path(sys.executable).parent / "py-spy"
        if not exe.exists():
            print("--profile needs py-spy in the venv (pip install py-spy); not profiling", file=sys.stderr)
            return
        self.spies.append(subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), *(["--subprocesses"] if children else []),
             *(["-d", str(int(seconds))] if seconds else []),
             "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    async def spies_done(self) -> None:
        """Until every py-spy has written its output."""
        while any(spy.poll() is None for spy in self.spies):
            await asyncio.sleep(0.1)

    def kill_children(self) -> None:
        """SIGKILL every child still running, with its process group, and any py-spy."""
        self._sigkill(self.children)
        for spy in self.spies:  # py-spy: not a session of its own
            if spy.poll() is None:
                spy.kill()
                spy.wait()

    def kill(self) -> None:
        """End everything at once, synchronously: children, servers; remove the temp dir."""
        self.kill_children()
        self.pg.kill()
        self.nats.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def connect(url: str, **options) -> nats.aio.client.Client:
    """``nats.connect`` with this process's credentials (``CORDON_NATS_CREDS``)."""
    return await nats.connect(url, **bus.credentials(os.environ.get("CORDON_NATS_CREDS")), **options)


# -- raw limits ------------------------------------------------------------------------------------


async def raw_js(url: str, seconds: float) -> float:
    """Messages/s of nats-py ``publish_async``, 200-byte messages to a scratch file stream
    ``BENCHRAW`` (R1) for ``seconds``, every ack awaited."""
    nc = await connect(url)
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name="BENCHRAW", subjects=["bench.raw"], storage=StorageType.FILE))
        payload, futures = os.urandom(100).hex().encode(), []
        t0 = now()
        while now() - t0 < seconds:
            for _ in range(500):
                # no wait_stall: with one, nats-py wraps each acquire in wait_for (about 3x the cost)
                futures.append(await js.publish_async("bench.raw", payload))
        await asyncio.wait_for(asyncio.gather(*futures), 30)  # nats-py can hang on a rejection
        rate = len(futures) / (now() - t0)
        await js.delete_stream("BENCHRAW")
        return rate
    finally:
        await nc.close()


_RAW_INSERT = "INSERT INTO bench_raw VALUES ($1, $2)"


async def _insert_many(conn, payload: bytes, first: int, seconds: float) -> tuple[int, float]:
    """``executemany`` of 10,000 rows per transaction for ``seconds``: (rows, rows/s)."""
    n, t0 = 0, now()
    while now() - t0 < seconds:
        start = first + n
        async with conn.transaction():
            await conn.executemany(_RAW_INSERT, [(start + i, payload) for i in range(10_000)])
        n += 10_000
    return n, n / (now() - t0)


async def _insert_single(conn, payload: bytes, first: int, seconds: float,
                         latencies: list[float] | None = None) -> tuple[int, float]:
    """One ``INSERT`` per autocommit transaction for ``seconds``: (rows, rows/s); each commit's
    seconds appended to ``latencies`` if given."""
    n, t0 = 0, now()
    while (started := now()) - t0 < seconds:
        await conn.execute(_RAW_INSERT, first + n, payload)
        if latencies is not None:
            latencies.append(now() - started)
        n += 1
    return n, n / (now() - t0)


async def raw_pg(dsn: str, seconds: float, autocommit_first: bool = False,
                 commits: list[float] | None = None) -> tuple[float, float]:
    """Rows/s of (``executemany``, single-row autocommit) inserts of (bigint, 200-byte bytea) into a
    scratch table, ``seconds`` each; executemany first unless ``autocommit_first`` (the second
    phase inserts into the rows the first left). Each single-row commit's seconds go to
    ``commits`` if given (the raw commit latency a command's reply is compared with)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE bench_raw (id bigint PRIMARY KEY, payload bytea NOT NULL)")
        payload = os.urandom(200)
        if autocommit_first:
            rows, single = await _insert_single(conn, payload, 0, seconds, commits)
            _, many = await _insert_many(conn, payload, rows, seconds)
        else:
            rows, many = await _insert_many(conn, payload, 0, seconds)
            _, single = await _insert_single(conn, payload, rows, seconds, commits)
        await conn.execute("DROP TABLE bench_raw")
        return many, single
    finally:
        await conn.close()


class CommitProbe:
    """Single-row autocommit inserts, one every ``interval`` s on a connection of its own, while a
    phase runs (``async with``): the raw commit latency under the same load, on the same disk, at
    the same time as the figure it is compared with. A raw phase run alone misses what the phase
    meets: on this VM, the WAL's fsync now and then takes hundreds of milliseconds (the
    walwriter seen in ``IO:WalSync``), and every commit waits for it."""

    def __init__(self, dsn: str, interval: float = 0.02):
        self.dsn, self.interval = dsn, interval
        self.latencies: list[float] = []
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "CommitProbe":
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (id bigint PRIMARY KEY, payload bytea NOT NULL)")
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        payload, n, t0 = os.urandom(200), 0, now()
        while True:
            started = now()
            await self._conn.execute("INSERT INTO bench_probe VALUES ($1, $2)", n, payload)
            self.latencies.append(now() - started)
            n += 1
            # on schedule, not after each commit: a stall is one slow commit, not a gap
            await asyncio.sleep(max(0.0, t0 + n * self.interval - now()))

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        try:
            await self._conn.execute("DROP TABLE bench_probe")
        finally:
            await self._conn.close()
