"""`cordon reconcile` checks the consumers' effects, not only their inboxes, on real NATS and
PostgreSQL.

The story: a committee registers a compound, households and residents (one moves out); quarantine
opens two home cases, releases one and seals a building; checkpoint and logistics keep their
copies, the views their figures. Reconcile agrees with all of it. Then each kind of effect is
corrupted by hand in SQL, one at a time: reconcile names the difference and exits 1; restored, it
agrees again. Whatever happens, it leaves no scratch schema and no shadow generation behind.

One Cordon serves the module (its own NATS and database); each test restores what it corrupts.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.ops import scratch
from services.ops.cli import reconcile_all
from services.quarantine.config import Config as QuarantineConfig
from services.registry.app import spec as registry_spec
from services.views import schema as views_schema
from services.views.app import spec as views_spec
from shared import envelope
from shared.config import Config
from shared.embedded import ensure_database
from shared.subjects import STREAM
from tests.support.bus import connect, operator_config, start_secure_nats
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, resident, running
from tests.support.logistics import logistics
from tests.support.quarantine import Clock, quarantine

pytestmark = pytest.mark.integration

CITY = ZoneInfo("Asia/Shanghai")
SERVICES = ("registry", "checkpoint", "quarantine", "logistics", "views")
OUTBOXES = ("registry", "checkpoint", "quarantine", "logistics")
ELSEWHERE = "changning.chengjiaqiao.tianshan"


@dataclass
class World:
    config: Config
    dsn: str
    residents: list[str]
    moved_out: str


async def settled(nc, dsn: str) -> bool:
    """Every outbox empty, every durable consumer and the views at the stream's head."""
    conn = await asyncpg.connect(dsn)
    try:
        for service in OUTBOXES:
            if await conn.fetchval(f"SELECT count(*) FROM {service}.outbox"):
                return False
        js = nc.jetstream()
        for info in await js.consumers_info(STREAM):
            if info.config.durable_name and (info.num_pending or info.num_ack_pending):
                return False
        head = (await js.stream_info(STREAM)).state.last_seq
        return await views_schema.hwm(conn, await views_schema.current(conn)) == head
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def world(pg_server, tmp_path_factory):
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-reconcile-effects"))
    name = f"test_effects_{uuid.uuid4().hex[:12]}"
    dsn = await ensure_database(pg_server.dsn, name)
    url = server.url
    # Quarantine's day is yesterday (its scheduler, hourly here, does not sweep at 09:00); one case
    # started 13 days before, so it can be released today.
    today = datetime.now(CITY).date() - timedelta(days=1)
    clock = Clock(datetime.combine(today, time(9), tzinfo=CITY))
    try:
        async with contextlib.AsyncExitStack() as stack:
            for spec in (registry_spec(), checkpoint_spec(), views_spec()):
                await stack.enter_async_context(running(spec, url, dsn))
            await stack.enter_async_context(quarantine(url, dsn, clock, interval=3600,
                                                       settings=QuarantineConfig()))
            await stack.enter_async_context(logistics(url, dsn, clock=envelope.utcnow, daily_interval_s=3600))
            nc = await connect(url)
            stack.push_async_callback(nc.close)
            registry, cases = Client(nc), Client(nc, service="quarantine")
            await community(registry)
            homes = [await household(registry, building=b) for b in ("b1", "b1", "b2")]
            people = [await resident(registry, h) for h in homes for _ in range(2)]
            await registry.ok("move_out", resident=people[-1])
            # a visit finds the first resident living alone: every directory takes the new flags
            await registry.ok("update_resident", resident=people[0], vulnerabilities=["elderly_alone"])
            await eventually(lambda: _known(dsn, people), what="quarantine's directory knows everyone")
            for person, case, days in ((people[0], "case-1", 13), (people[2], "case-2", 2)):
                await cases.ok("open_case", community=COMMUNITY, resident=person, kind="home", reason="arrival",
                               starts_on=str(today - timedelta(days=days)), case=case)
            await cases.ok("release_case", case="case-1", on=str(today))
            await cases.ok("seal", community=COMMUNITY, compound="nangong-1", building="b2")
            # a round whose sampled stay in until the result: one awaits it (the gate's copy has a row)
            await cases.ok("schedule_screening", community=COMMUNITY, compound="nangong-1", on=str(today),
                           screening="round-1", stay_in_until_result=True,
                           slots=[{"label": "everyone", "from": "00:00", "to": "23:59"}])
            await cases.ok("record_sample", screening="round-1", resident=people[1])
            # In another committee, a resident comes and goes the same day, the views applying
            # each on its own: its residents figure is stored as 0 (a shadow folds the two away)
            await registry.ok("register_compound", community=ELSEWHERE, compound="tianshan-1", name="天山小区",
                              buildings=["b1"], gates=["g1"])
            home = (await registry.ok("register_household", community=ELSEWHERE, compound="tianshan-1",
                                      building="b1", address="b1 room 1"))["events"][0]["data"]["household"]
            passing = await resident(registry, home)
            await eventually(lambda: settled(nc, dsn), timeout=20, what="every effect applied")
            await registry.ok("move_out", resident=passing)
            await eventually(lambda: settled(nc, dsn), timeout=20, what="every effect applied")
            yield World(operator_config(url, pg_dsn=dsn), dsn, people, people[-1])
    finally:
        await server.stop()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(pg_server.dsn)
            try:
                await conn.execute(f'drop database if exists "{name}" with (force)')
            finally:
                await conn.close()


async def _known(dsn: str, people: list[str]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM quarantine.dir_residents WHERE resident = ANY($1)",
                                   people) == len(people)
    finally:
        await conn.close()


async def reconciled(config: Config, services=SERVICES, progress=None) -> tuple[int, str]:
    out = io.StringIO()
    code = await reconcile_all(config, services, out=out, err=io.StringIO(), progress=progress)
    return code, out.getvalue()


async def leftovers(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await scratch.leftovers(conn)
    finally:
        await conn.close()


async def test_a_quiet_cordon_agrees_with_a_replay_of_every_effect(world):
    conn = await asyncpg.connect(world.dsn)
    try:  # (a figure stored as 0 is no difference: see services/ops/shadow.py)
        g = views_schema.name(await views_schema.current(conn))
        assert await conn.fetchval("SELECT count(*) FROM checkpoint.awaiting_results") == 1
        assert await conn.fetchval(f"SELECT n FROM {g}.figures WHERE community = $1 AND metric = 'residents'",
                                   ELSEWHERE) == 0
    finally:
        await conn.close()
    code, out = await reconciled(world.config)
    assert code == 0, out
    summaries = {line.split(": ")[0]: line for line in out.splitlines()}
    for consumer, tables in (("checkpoint-directory", 3), ("checkpoint-quarantine", 3),
                             ("quarantine-directory", 3), ("logistics-directory", 3), ("logistics-seals", 1)):
        assert summaries[f"copy {consumer}"].endswith(f" replayed, {tables} table{'s' * (tables > 1)} agree"), out
    # 2 opened, 1 released, 1 seal, 1 sample awaiting its result
    assert "copy checkpoint-quarantine: 5 events replayed" in out
    # two compounds, 4 households, 7 residents, 2 moves, 1 update of a resident's flags
    assert "copy checkpoint-directory: 16 events replayed" in out
    assert "views: " in out and "6 tables agree" in out and out.endswith("0 differences\n"), out
    assert await leftovers(world.dsn) == []


# What is corrupted by hand, how it is put back, and what reconcile must then say.
@dataclass(frozen=True)
class Corruption:
    sql: str
    restore: str
    said: str


def corruptions(w: World, generation: int) -> dict[str, Corruption]:
    g = views_schema.name(generation)
    return {
        "a directory resident's moved_out flipped": Corruption(
            f"UPDATE checkpoint.dir_residents SET moved_out = NOT moved_out WHERE resident = '{w.moved_out}'",
            f"UPDATE checkpoint.dir_residents SET moved_out = NOT moved_out WHERE resident = '{w.moved_out}'",
            f"copy checkpoint-directory: checkpoint.dir_residents resident={w.moved_out}: moved_out false here, "
            "true in the replay"),
        "a directory resident's update lost": Corruption(
            f"UPDATE logistics.dir_residents SET vulnerabilities = '{{}}' WHERE resident = '{w.residents[0]}'",
            f"UPDATE logistics.dir_residents SET vulnerabilities = '{{elderly_alone}}' "
            f"WHERE resident = '{w.residents[0]}'",
            f"copy logistics-directory: logistics.dir_residents resident={w.residents[0]}: vulnerabilities"),
        "a quarantine case lost from checkpoint's copy": Corruption(
            "CREATE TABLE public.kept AS SELECT * FROM checkpoint.q_cases WHERE case_id = 'case-2'; "
            "DELETE FROM checkpoint.q_cases WHERE case_id = 'case-2'",
            "INSERT INTO checkpoint.q_cases SELECT * FROM public.kept; DROP TABLE public.kept",
            "copy checkpoint-quarantine: checkpoint.q_cases lacks a row the replay has: {\"case_id\":\"case-2\""),
        "a sealed area that was never sealed": Corruption(
            "INSERT INTO logistics.sealed_areas VALUES ('x.y.z', 'seal:ghost', 'ghost', NULL, 'e-0', now(), 'c-0')",
            "DELETE FROM logistics.sealed_areas WHERE cause = 'seal:ghost'",
            "copy logistics-seals: logistics.sealed_areas has a row the replay does not: {\"community\":\"x.y.z\""),
        "a view figure off by one": Corruption(
            f"UPDATE {g}.figures SET n = n + 1 WHERE metric = 'residents' AND community = '{COMMUNITY}'",
            f"UPDATE {g}.figures SET n = n - 1 WHERE metric = 'residents' AND community = '{COMMUNITY}'",
            f"views: {g}.figures community={COMMUNITY} metric=residents day="),
        "a view member lost": Corruption(
            f"CREATE TABLE public.kept AS SELECT * FROM {g}.members WHERE metric = 'residents' LIMIT 1; "
            f"DELETE FROM {g}.members m USING public.kept k WHERE m.set = k.set AND m.key = k.key",
            f"INSERT INTO {g}.members SELECT * FROM public.kept; DROP TABLE public.kept",
            f"views: {g}.members lacks a row the replay has: "),
    }


@pytest.mark.parametrize("kind", ["a directory resident's moved_out flipped",
                                  "a directory resident's update lost",
                                  "a quarantine case lost from checkpoint's copy",
                                  "a sealed area that was never sealed",
                                  "a view figure off by one",
                                  "a view member lost"])
async def test_a_corrupted_effect_is_named_and_agrees_again_once_restored(world, kind):
    conn = await asyncpg.connect(world.dsn)
    try:
        corruption = corruptions(world, await views_schema.current(conn))[kind]
        # Given a quiet Cordon, when an effect is corrupted by hand
        await conn.execute(corruption.sql)
        try:
            code, out = await reconciled(world.config)
        finally:
            await conn.execute(corruption.restore)
        # Then reconcile names exactly that difference, and exits 1
        assert code == 1, out
        different = [line for line in out.splitlines() if line.startswith("DIFFERENT ")]
        assert len(different) == 1 and corruption.said in different[0], out
        assert "1 difference\n" in out
        # And once restored it agrees again, leaving nothing behind
        code, out = await reconciled(world.config)
        assert code == 0, out
        assert await leftovers(world.dsn) == []
    finally:
        await conn.close()


async def test_an_event_the_consumer_parked_is_not_expected_in_its_copy(world):
    conn = await asyncpg.connect(world.dsn)
    moved = await conn.fetchval(
        "SELECT event_id FROM registry.events WHERE type = 'ResidentMovedOut' "
        "AND convert_from(envelope, 'UTF8')::jsonb #>> '{data,resident}' = $1", world.moved_out)

    async def parked(yes: bool) -> None:  # as the consumer leaves a message it parked: no effect
        async with conn.transaction():
            await conn.execute("UPDATE checkpoint.inbox SET parked = $2 WHERE consumer = 'checkpoint-directory' "
                               "AND event_id = $1", moved, yes)
            await conn.execute("UPDATE checkpoint.dir_residents SET moved_out = $2 WHERE resident = $1",
                               world.moved_out, not yes)

    try:
        # Given the directory parked the move out (its inbox row says parked, its effect absent)
        await parked(True)
        # Then the replay leaves it out too: no difference
        code, out = await reconciled(world.config, services=("checkpoint",))
        assert code == 0, out
        assert "copy checkpoint-directory: 15 events replayed, 3 tables agree" in out
    finally:
        await parked(False)
        await conn.close()


async def test_a_check_that_fails_midway_leaves_nothing_behind_and_says_so(world):
    # Given a replay that fails part way (here: the progress line, the first time it is shown)
    def fail_on_checkpoints_copy(what, done, total):
        if what == "copy checkpoint-quarantine":
            raise RuntimeError("the disk is full")

    code, out = await reconciled(world.config, progress=fail_on_checkpoints_copy)
    # Then that check is reported as not checked (exit 1), the others still ran
    assert code == 1, out
    assert "DIFFERENT copy checkpoint-quarantine: could not be checked: RuntimeError: the disk is full" in out
    assert "copy logistics-seals: 1 event replayed, 1 table agree" in out and "6 tables agree" in out
    # And its scratch schema is gone
    assert await leftovers(world.dsn) == []


async def test_a_reconcile_cancelled_midway_drops_its_shadow_generation(world):
    # Given a reconcile interrupted (Ctrl-C cancels the command's task) once the views' shadow has rows
    def interrupt(what, done, total):
        if what.startswith("views") and done:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await reconciled(world.config, progress=interrupt)
    # Then nothing of it is left: no shadow generation, no scratch schema
    assert await leftovers(world.dsn) == []


async def test_what_a_reconcile_that_was_killed_left_behind_is_dropped_by_the_next_one(world):
    # Given a scratch schema and a shadow generation whose reconcile died (its session is gone),
    # and a scratch schema another reconcile still holds
    dead = await asyncpg.connect(world.dsn)
    killed = await scratch.create(dead)
    shadow = await scratch.create_shadow(dead)
    dead.terminate()
    alive = await asyncpg.connect(world.dsn)
    try:
        held = await scratch.create(alive)
        # When reconcile runs
        code, out = await reconciled(world.config)
        # Then it drops what the dead one left, notes it, and leaves the living one's alone
        assert code == 0, out
        assert f"note: dropped {killed}, left behind" in out
        assert f"note: dropped {views_schema.name(shadow)}, left behind" in out
        assert await leftovers(world.dsn) == [held]
        await scratch.drop(alive, held)
    finally:
        await alive.close()
    assert await leftovers(world.dsn) == []


async def test_the_shadow_stops_at_the_views_mark_not_at_the_streams_head(nats_url, pg_dsn):
    config = operator_config(nats_url, pg_dsn=pg_dsn)
    async with running(registry_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        client = Client(nc)
        # Given views that applied the stream up to some point and stopped (the service is down)
        async with running(views_spec(), nats_url, pg_dsn):
            await community(client)
            await household(client)
            await eventually(lambda: settled_views(nc, pg_dsn), what="views at the head")
        mark = await views_mark(pg_dsn)  # not the stream's head: the relay may have published since
        # When more events come after it
        for _ in range(3):
            await household(client)
        await eventually(lambda: beyond(nc, mark + 3), what="the households on the stream")
        # Then the views agree with a shadow built up to their mark, not to the head
        code, out = await reconciled(config, services=("views",))
        assert code == 0, out
        assert f"views: {mark} events replayed into a shadow of generation 1 up to sequence {mark}, " in out
        await nc.close()


async def settled_views(nc, dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('views.current') IS NOT NULL"):
            return False
        head = (await nc.jetstream().stream_info(STREAM)).state.last_seq
        return head > 0 and await views_schema.hwm(conn, await views_schema.current(conn)) == head
    finally:
        await conn.close()


async def views_mark(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await views_schema.hwm(conn, await views_schema.current(conn))
    finally:
        await conn.close()


async def beyond(nc, seq: int) -> bool:
    return (await nc.jetstream().stream_info(STREAM)).state.last_seq >= seq
