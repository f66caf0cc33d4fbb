"""`cordon feed` against the real gateway, NATS, PostgreSQL and registry: a committee's staff follow
their community's events in a terminal, stop, come back and get exactly what they missed."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import msgspec
import pytest

from services.registry.app import spec as registry_spec
from services.web.feed_cli import Options, follow
from shared import envelope as env
from shared.config import city_zone
from shared.identity import Identity
from shared.subjects import STREAM
from shared.tasks import cancel
from tests.support.bus import connect
from tests.support.cordon import Client, eventually, prc_id, running
from tests.support.identities import BEIXIN, NANGONG
from tests.support.web import creds, free_port, gateway, login

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ROOT = Path(__file__).resolve().parents[2]


class Cordon:
    """The registry, the gateway and an operator's connection for recording Nangong's events."""

    def __init__(self, nc, nats_url: str, base: str, tmp: Path) -> None:
        self.nc, self.js, self.nats_url, self.base, self.tmp = nc, nc.jetstream(), nats_url, base, tmp
        self.registry = Client(nc)
        self.households = 0

    async def compound(self, community: str = NANGONG) -> None:
        await self.registry.ok("register_compound", community=community, compound=f"{community.split('.')[-1]}-1",
                               name="南宫小区", buildings=["b1"], gates=["g1"])

    async def households_registered(self, n: int, community: str = NANGONG) -> list[str]:
        """``n`` more households (h-001, h-002, …), recorded and on the stream; their ids."""
        ids = []
        for _ in range(n):
            self.households += 1
            ids.append(f"h-{self.households:03d}")
            await self.registry.ok("register_household", community=community, household=ids[-1],
                                   compound=f"{community.split('.')[-1]}-1", building="b1", address="b1 room 1")
        await self.on_stream()
        return ids

    async def on_stream(self) -> int:
        """Wait until the relay published everything recorded; the stream's last sequence."""
        async def published():
            last = (await self.js.stream_info(STREAM)).state.last_seq
            await asyncio.sleep(0.05)
            return last if (await self.js.stream_info(STREAM)).state.last_seq == last and last else None
        return await eventually(published, what="the relay to publish")

    def creds_file(self, identity: Identity = LI_WEI) -> Path:
        path = self.tmp / f"{identity.name}.creds"
        path.write_text(creds(self.nats_url, identity)[1])
        path.chmod(0o600)
        return path

    async def consumers(self) -> list[str]:
        return sorted(c.name for c in await self.js.consumers_info(STREAM))

    async def feed_exists(self, durable: str, identity: str = "li-wei") -> bool:
        return f"webfeed-{identity}-{durable}" in await self.consumers()


@contextlib.asynccontextmanager
async def cordon(nats_url: str, pg_dsn: str, tmp_path: Path, **settings):
    nc = await connect(nats_url)
    try:
        async with running(registry_spec(), nats_url, pg_dsn), gateway(nats_url, **settings) as base:
            world = Cordon(nc, nats_url, base, tmp_path)
            await world.compound()
            await world.on_stream()
            yield world
    finally:
        await nc.close()


class Screen:
    """What the CLI prints (stdout or stderr), line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._part = ""

    def write(self, text: str) -> int:
        *done, self._part = (self._part + text).split("\n")
        self.lines += done
        return len(text)

    def flush(self) -> None:
        pass

    async def shows(self, n: int, timeout: float = 10.0) -> list[str]:
        async def enough():
            return len(self.lines) >= n
        await eventually(enough, timeout, what=f"{n} lines (got {self.lines})")
        return self.lines


@contextlib.asynccontextmanager
async def cli(world: Cordon, durable: str = "laptop", **options):
    """`cordon feed` running in-process as li-wei: (its stdout, its stderr, its task)."""
    out, err = Screen(), Screen()
    opts = Options(community=NANGONG, creds=str(world.creds_file()), url=world.base, durable=durable,
                   state_dir=world.tmp / "feed", backoff_s=0.1, **options)
    task = asyncio.create_task(follow(opts, out, err))
    try:
        yield out, err, task
    finally:
        await cancel(task)


def subjects(lines: list[str]) -> list[str]:
    """The subject column of feed lines (a household's id here)."""
    return [line.split()[3] for line in lines]


async def test_the_communitys_events_arrive_as_lines_and_as_envelopes(nats_url, pg_dsn, tmp_path):
    async with cordon(nats_url, pg_dsn, tmp_path) as world:
        await world.compound(BEIXIN)
        # Given li-wei, staff of Nangong, follows her community on her laptop, and in JSON for a script
        async with cli(world) as (out, err, _), cli(world, durable="script", json=True) as (machine, _, _):
            await eventually(lambda: world.feed_exists("laptop"), what="the laptop's feed")
            await eventually(lambda: world.feed_exists("script"), what="the script's feed")
            # When households and a resident are registered in Nangong, and one in Beixin
            await world.households_registered(1, BEIXIN)
            ids = await world.households_registered(2)
            reply = await world.registry.ok("register_resident", household=ids[0], name="王小伟",
                                            id_number=prc_id(1), birth_year=1950)
            resident = reply["events"][0]["data"]["resident"]
            # Then each of Nangong's events is one line: local time, type, masked subject, summary
            shown = await out.shows(3)
            assert subjects(shown[:2]) == ids
            for line in shown:  # the city's local time, now
                at = datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=city_zone())
                assert abs((datetime.now(timezone.utc) - at).total_seconds()) < 60 and line[19:21] == "  "
            assert shown[0].split()[2] == "HouseholdRegistered" and shown[0].endswith("household registered at nangong-1/b1")
            assert shown[2].split()[2:4] == ["ResidentRegistered", "王*伟"]
            assert "王小伟" not in "".join(shown) and resident[:8] not in shown[2]
            # And the script gets each as its envelope, one JSON line, Nangong's only
            envelopes = [msgspec.json.decode(line, type=env.Envelope) for line in await machine.shows(3)]
            assert [e.community for e in envelopes] == [NANGONG] * 3
            assert [e.data.get("household") for e in envelopes[:2]] == ids and envelopes[2].type == "ResidentRegistered"
            await asyncio.sleep(0.3)
            assert len(out.lines) == 3 and len(machine.lines) == 3 and not err.lines


async def test_a_feed_stopped_and_run_again_prints_exactly_what_it_missed(nats_url, pg_dsn, tmp_path):
    async with cordon(nats_url, pg_dsn, tmp_path) as world:
        # Given li-wei's laptop followed Nangong through three households, then was shut
        async with cli(world) as (out, _, _):
            await eventually(lambda: world.feed_exists("laptop"), what="the feed")
            first = await world.households_registered(3)
            assert subjects(await out.shows(3)) == first
        position = world.tmp / "feed" / "li-wei-laptop.last"
        assert position.stat().st_mode & 0o777 == 0o600
        # When four more are registered while it is off
        missed = await world.households_registered(4)
        # Then the laptop, run again, prints exactly those, in order, then what comes next, none twice
        async with cli(world) as (out, err, _):
            assert subjects(await out.shows(4)) == missed
            later = await world.households_registered(1)
            assert subjects(await out.shows(5)) == missed + later
            await asyncio.sleep(0.3)
            assert len(out.lines) == 5 and not err.lines
        # And another device of hers (its own durable, from now on) is not moved by the laptop
        async with cli(world, durable="phone") as (phone, _, _):
            await eventually(lambda: world.feed_exists("phone"), what="the phone's feed")
            now = await world.households_registered(1)
            assert subjects(await phone.shows(1)) == now


async def read_events(lines, n: int) -> list[dict]:
    """The next ``n`` events of a stream's lines, as {id, event, data}."""
    got, current = [], {}
    async for line in lines:
        if not line:
            if "data" in current:
                got.append(current)
                if len(got) == n:
                    return got
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value
    raise AssertionError(f"the stream ended after {got}")


async def test_events_sent_to_a_client_that_died_before_handling_them_come_again(nats_url, pg_dsn, tmp_path):
    async with cordon(nats_url, pg_dsn, tmp_path) as world, \
            httpx.AsyncClient(base_url=world.base, timeout=10) as http:
        headers = await login(http, creds(nats_url, LI_WEI)[1])
        params = {"community": NANGONG, "durable": "phone"}
        # Given the phone's stream was sent five events, and the phone died having handled two
        # (its connection still looks open to the gateway)
        async with http.stream("GET", "/v1/feed", params=params, headers=headers) as dead:
            assert dead.status_code == 200
            dead_lines = dead.aiter_lines()
            await eventually(lambda: world.feed_exists("phone"), what="the feed")
            ids = await world.households_registered(5)
            sent = await read_events(dead_lines, 5)
            assert [json.loads(e["data"])["data"]["household"] for e in sent] == ids
            handled = int(sent[1]["id"])
            # When it comes back saying the last it handled (Last-Event-ID)
            async with http.stream("GET", "/v1/feed", params=params,
                                   headers={**headers, "last-event-id": str(handled)}) as back:
                assert back.status_code == 200
                lines = back.aiter_lines()
                # Then the three it never handled come again, in order, then the next one
                again = await read_events(lines, 3)
                assert [e["id"] for e in again] == [e["id"] for e in sent[2:]]
                assert [e["event"] for e in again] == ["HouseholdRegistered"] * 3
                more = await world.households_registered(1)
                nxt = (await read_events(lines, 1))[0]
                assert json.loads(nxt["data"])["data"]["household"] == more[0]
                # And the old stream was ended by the new one (two never pull one consumer)
                rest = [line async for line in dead_lines]
                assert not any(line.startswith("id:") for line in rest)
        # And back once more having handled everything: nothing repeated, only what is new
        async with http.stream("GET", "/v1/feed", params=params,
                               headers={**headers, "last-event-id": nxt["id"]}) as last:
            lines = last.aiter_lines()
            newest = await world.households_registered(1)
            only = await read_events(lines, 1)
            assert json.loads(only[0]["data"])["data"]["household"] == newest[0]


async def test_an_idle_stream_keeps_alive_and_a_client_gone_stops_its_pull_at_once(nats_url, pg_dsn, tmp_path):
    async with cordon(nats_url, pg_dsn, tmp_path, feed_keepalive_s=0.2) as world, \
            httpx.AsyncClient(base_url=world.base, timeout=10) as http:
        headers = await login(http, creds(nats_url, LI_WEI)[1])

        async def pulling():
            return (await world.js.consumer_info(STREAM, "webfeed-li-wei-tablet")).num_waiting

        # Given the tablet's stream is open, its pull waiting at the server
        async with http.stream("GET", "/v1/feed", params={"community": NANGONG, "durable": "tablet"},
                               headers=headers) as reply:
            lines = reply.aiter_lines()  # kept: an abandoned line iterator closes the connection
            assert await lines.__anext__() == ": feed webfeed-li-wei-tablet"
            await eventually(pulling, what="the pull")
            # (with nothing to send, a comment now and then keeps proxies from closing it)
            assert [await lines.__anext__() for _ in range(3)] == ["", ": keep-alive", ""]
        # When the tablet goes away, and households are registered
        ids = await world.households_registered(2)

        # Then nothing is sent to nobody: the pull is gone, the events wait, none awaiting an ack
        async def waiting():
            info = await world.js.consumer_info(STREAM, "webfeed-li-wei-tablet")
            return info.num_waiting == 0 and (info.num_pending, info.num_ack_pending) == (len(ids), 0)
        await eventually(waiting, timeout=2, what="the pull to stop (its requests expire only after 5 s)")


async def test_another_committees_community_is_forbidden_and_nothing_is_created(nats_url, pg_dsn, tmp_path):
    # (refusals come at once: a read that waits is a stream opened where it should not be)
    async with cordon(nats_url, pg_dsn, tmp_path) as world, \
            httpx.AsyncClient(base_url=world.base, timeout=httpx.Timeout(10, read=3)) as http:
        before = await world.consumers()
        # When li-wei asks for Beixin's feed, over HTTP and with the CLI
        headers = await login(http, creds(nats_url, LI_WEI)[1])
        reply = await http.get("/v1/feed", params={"community": BEIXIN}, headers=headers)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden", reply.text
        out, err = Screen(), Screen()
        options = Options(community=BEIXIN, creds=str(world.creds_file()), url=world.base, state_dir=tmp_path / "feed")
        assert await follow(options, out, err) == 4
        assert "forbidden" in err.lines[0] and BEIXIN in err.lines[0] and not out.lines
        # And a gate device of Nangong asks for Nangong's
        gate = Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
        reply = await http.get("/v1/feed", params={"community": NANGONG},
                               headers=await login(http, creds(nats_url, gate)[1]))
        assert reply.status_code == 403 and "no feed" in reply.json()["error"]["message"]
        # And without logging in
        assert (await http.get("/v1/feed", params={"community": NANGONG})).status_code == 401
        # Then no consumer was created for any of them
        assert await world.consumers() == before
        # And a durable that follows Nangong cannot be turned to another community
        async with http.stream("GET", "/v1/feed", params={"community": NANGONG, "durable": "d1"},
                               headers=headers) as opened:
            assert opened.status_code == 200
        officer = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao")
        officer_headers = await login(http, creds(nats_url, officer)[1])
        async with http.stream("GET", "/v1/feed", params={"community": NANGONG, "durable": "d1"},
                               headers=officer_headers) as street:
            assert street.status_code == 200
        conflict = await http.get("/v1/feed", params={"community": "changning.chengjiaqiao", "durable": "d1"},
                                  headers=officer_headers)
        assert conflict.status_code == 409 and conflict.json()["error"]["field"] == "durable"
        assert NANGONG in conflict.json()["error"]["message"]
        # Nor taken by another identity whose name and durable join into the same consumer name
        li = Identity(name="li", role="staff", scope=NANGONG)
        taken = await http.get("/v1/feed", params={"community": NANGONG, "durable": "wei-d1"},
                               headers=await login(http, creds(nats_url, li)[1]))
        assert taken.status_code == 409 and "taken" in taken.json()["error"]["message"], taken.text


async def test_since_yields_earlier_events(nats_url, pg_dsn, tmp_path):
    async with cordon(nats_url, pg_dsn, tmp_path) as world:
        # Given households registered this morning, before li-wei's feed existed, then later ones
        morning = await world.households_registered(2)
        await asyncio.sleep(0.05)
        noon = datetime.now(timezone.utc)
        await asyncio.sleep(0.05)
        afternoon = await world.households_registered(2)
        # When she follows from today, from noon, and from now on
        today = datetime.now(city_zone()).date().isoformat()
        async with cli(world, durable="today", since=today) as (from_today, _, _), \
                cli(world, durable="noon", since=noon.isoformat()) as (from_noon, _, _), \
                cli(world, durable="now") as (from_now, _, _):
            # Then from today: the compound and every household so far; from noon: the afternoon's
            shown = await from_today.shows(5)
            assert shown[0].split()[2] == "CompoundRegistered" and subjects(shown[1:]) == morning + afternoon
            assert subjects(await from_noon.shows(2)) == afternoon
            # And from now on: only what comes next
            await eventually(lambda: world.feed_exists("now"), what="the feed from now on")
            evening = await world.households_registered(1)
            assert subjects(await from_now.shows(1)) == evening
            assert subjects(await from_noon.shows(3)) == afternoon + evening


async def test_a_revoked_identitys_feed_ends_and_it_cannot_come_back(nats_server, pg_dsn, tmp_path):
    async with cordon(nats_server.url, pg_dsn, tmp_path) as world:
        # Given li-wei follows Nangong
        public_key, text = creds(nats_server.url, LI_WEI)
        path = tmp_path / "li-wei.creds"
        path.write_text(text)
        out, err = Screen(), Screen()
        options = Options(community=NANGONG, creds=str(path), url=world.base, state_dir=tmp_path / "feed",
                          backoff_s=0.1)
        task = asyncio.create_task(follow(options, out, err))
        try:
            await eventually(lambda: world.feed_exists("default"), what="the feed")
            await world.households_registered(1)
            await out.shows(1)
            # When her key is revoked
            await nats_server.authority.push_account(nats_server.url, "CITY", {public_key: int(time.time())})
            # Then her feed ends, the gateway refuses her on reconnecting, and the CLI says so
            assert await asyncio.wait_for(task, 10) == 3
            assert "credentials refused" in err.lines[-1], err.lines
            # And nothing recorded after the revocation reached her
            await world.households_registered(1)
            assert len(out.lines) == 1
        finally:
            await cancel(task)


def run_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "feed", *args, cwd=ROOT,
                                          env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
                                          stderr=asyncio.subprocess.PIPE)


async def exits_within(process, seconds: float) -> int:
    """The process's exit code; if it has not exited after ``seconds``, fail with its stacks."""
    try:
        return await asyncio.wait_for(asyncio.shield(process.wait()), seconds)
    except asyncio.TimeoutError:
        spy = Path(sys.executable).parent / "py-spy"
        dump = subprocess.run([str(spy), "dump", "--pid", str(process.pid)], capture_output=True, text=True,
                              timeout=30) if spy.exists() else None
        pytest.fail(f"still running {seconds:g} s after Ctrl-C:\n" + (dump.stdout + dump.stderr if dump else
                                                                     "(no py-spy to show its stacks)"))


async def test_the_command_prints_lines_and_ctrl_c_ends_it_quietly(nats_url, pg_dsn, tmp_path):
    async with cordon(nats_url, pg_dsn, tmp_path) as world:
        # Given `cordon feed` runs as a command with li-wei's credentials in CORDON_* variables
        process = await run_cli("--community", NANGONG, env={
            "CORDON_WEB_URL": world.base, "CORDON_NATS_CREDS": str(world.creds_file()),
            "CORDON_DATA_DIR": str(tmp_path / "data"), "CORDON_TIMEZONE": "Asia/Shanghai"})
        try:
            await eventually(lambda: world.feed_exists("default"), what="the command's feed")
            # When a household is registered, then Ctrl-C
            ids = await world.households_registered(1)
            line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
            assert line.split()[2:4] == ["HouseholdRegistered", ids[0]]
            process.send_signal(signal.SIGINT)
            # Then it exits 130 without a word, having kept its position (in about 0.15 s; once,
            # in a two-worker CI run, not within 10 s: if it hangs, the failure shows where)
            assert await exits_within(process, 30) == 130
            assert await process.stderr.read() == b""
            assert (tmp_path / "data" / "feed" / "li-wei-default.last").read_text().endswith(f" {NANGONG}\n")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_a_gateway_that_is_not_there_is_said_so(tmp_path):
    path = tmp_path / "li-wei.creds"
    path.write_text("not read: the gateway is not reached")
    process = await run_cli("--community", NANGONG, "--creds", str(path), "--url", f"http://127.0.0.1:{free_port()}",
                            env={"CORDON_DATA_DIR": str(tmp_path)})
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 5 and out == b""
    assert b"cannot reach the gateway" in err and b"cordon web" in err
