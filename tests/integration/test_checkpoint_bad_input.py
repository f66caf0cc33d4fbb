"""Bad input at the checkpoint, through the wire, against real NATS and PostgreSQL.

A registry and a checkpoint serve one compound (gates g1, g2; a household in b1 with a resident; one
pass issued, one passage recorded). Then the gate's clients send what goes wrong at a gate: an unknown
gate or compound, a temperature of "hot" or 80 °C, a visitor without a host household, bytes that are
not JSON, references to nothing, and well-formed commands the rules refuse. Each one gets a clear
error with a stable code and leaves no trace (no event, no stored reply, no visitor, pass or shift
row, nothing on the CORDON stream); afterwards the same service still accepts valid commands.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.registry.app import spec as registry_spec
from shared.embedded import ensure_database
from shared.subjects import STREAM
from tests.support.bus import connect, start_secure_nats
from tests.support.cordon import COMMUNITY, Client, running

pytestmark = pytest.mark.integration

TABLES = ("events", "commands", "passes", "visitors", "shifts")
_n = itertools.count(1)
PASSAGE = dict(community=COMMUNITY, compound="nangong-1", gate="g1", direction="out", temperature_c=36.6)
VISITOR = {"name": "张三丰", "phone": "13800001111", "host_household": "h-1", "purpose": "送药"}


@dataclass(frozen=True)
class Bad:
    command: str
    payload: dict | bytes
    code: str
    field: str | None = None
    reason: str | None = None

    @property
    def raw(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps({"command_id": f"bad-{next(_n)}", "actor": "staff:guard-zhou", **self.payload},
                          ensure_ascii=False).encode()


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


CASES = {
    "unknown gate": Bad("check_passage", {**PASSAGE, "gate": "g9", "resident": "r-1"}, "not_found", "gate"),
    "unknown compound": Bad("check_passage", {**PASSAGE, "compound": "nowhere", "resident": "r-1"}, "not_found",
                            "compound"),
    "compound of another community": Bad("check_passage", {**PASSAGE, "community": "putuo.wanli.wanli-3",
                                                           "resident": "r-1"}, "not_found", "compound"),
    "temperature hot": Bad("check_passage", {**PASSAGE, "temperature_c": "hot", "resident": "r-1"}, "invalid",
                           "temperature_c"),
    "temperature 80": Bad("check_passage", {**PASSAGE, "temperature_c": 80, "resident": "r-1"}, "invalid",
                          "temperature_c"),
    "visitor without host household": Bad("check_passage", {**PASSAGE, "visitor": without(VISITOR, "host_household")},
                                          "invalid", "visitor.host_household"),
    "visitor host nobody knows": Bad("check_passage", {**PASSAGE, "visitor": {**VISITOR, "host_household": "h-x"}},
                                     "not_found", "visitor.host_household"),
    "visitor host of another compound": Bad("check_passage", {**PASSAGE, "compound": "nangong-2",
                                                              "visitor": VISITOR}, "not_found",
                                            "visitor.host_household"),
    "nobody at the gate": Bad("check_passage", PASSAGE, "invalid", "pass"),
    "passage id taken": Bad("check_passage", {**PASSAGE, "resident": "r-1", "passage": "p-taken"}, "conflict",
                            "passage"),
    "not json": Bad("check_passage", b'{"gate": ', "invalid"),
    "an array": Bad("check_passage", b"[1, 2]", "invalid"),
    "too large": Bad("check_passage", json.dumps({**PASSAGE, "resident": "r-1", "note": "x" * 70000}).encode(),
                     "too_large"),
    "unknown command": Bad("open_every_gate", {"community": COMMUNITY}, "unknown_command"),
    "close an unknown gate": Bad("set_gate", {"community": COMMUNITY, "compound": "nangong-1", "gate": "g9",
                                              "open": False}, "not_found", "gate"),
    "open an open gate": Bad("set_gate", {"community": COMMUNITY, "compound": "nangong-1", "gate": "g1",
                                          "open": True}, "rejected", reason="gate_already_open"),
    "level of an unknown compound": Bad("set_control_level", {"community": COMMUNITY, "compound": "nowhere",
                                                              "level": "sealed"}, "not_found", "compound"),
    "level unchanged": Bad("set_control_level", {"community": COMMUNITY, "compound": "nangong-1", "level": "open"},
                           "rejected", reason="level_unchanged"),
    "passes for nobody": Bad("issue_passes", {"community": COMMUNITY, "compound": "nangong-1",
                                              "households": ["h-1", "h-nobody"]}, "not_found", "households[1]"),
    "passes for another compound's household": Bad("issue_passes", {"community": COMMUNITY, "compound": "nangong-2",
                                                                    "households": ["h-1"]}, "not_found",
                                                   "households[0]"),
    "passes again": Bad("issue_passes", {"community": COMMUNITY, "compound": "nangong-1", "all_households": True},
                        "rejected", reason="already_issued"),
    "revoke a pass never issued": Bad("revoke_pass", {"pass": "ZZZZZ-ZZZZZ", "reason": "lost"}, "not_found", "pass"),
    "shift at an unknown gate": Bad("start_shift", {"community": COMMUNITY, "gate": "g9", "staff": "volunteer:li"},
                                    "not_found", "gate"),
    "shift at a gate two compounds have": Bad("start_shift", {"community": COMMUNITY, "gate": "g1",
                                                              "staff": "volunteer:li"}, "invalid", "compound"),
    "end a shift never started": Bad("end_shift", {"community": COMMUNITY, "gate": "g2", "compound": "nangong-1",
                                                   "staff": "volunteer:li"}, "rejected", reason="not_on_shift"),
}


class World:
    def __init__(self, nc, db):
        self.nc, self.db = nc, db
        self.chk = Client(nc, service="checkpoint")

    async def counts(self) -> dict:
        return {t: await self.db.fetchval(f"SELECT count(*) FROM checkpoint.{t}") for t in TABLES}

    async def stream_messages(self) -> int:
        return (await self.nc.jetstream().stream_info(STREAM)).state.messages


async def settle(db, sql: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await db.fetchval(sql):
        assert asyncio.get_running_loop().time() < deadline, sql
        await asyncio.sleep(0.03)


@pytest.fixture(scope="module")
async def world(pg_server, tmp_path_factory):
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-checkpoint-bad"))
    name = f"test_cpbad_{uuid.uuid4().hex[:12]}"
    dsn = await ensure_database(pg_server.dsn, name)
    try:
        async with running(registry_spec(), server.url, dsn), running(checkpoint_spec(), server.url, dsn):
            nc = await connect(server.url)
            db = await asyncpg.connect(dsn)
            reg = Client(nc)
            for compound in ("nangong-1", "nangong-2"):
                await reg.ok("register_compound", community=COMMUNITY, compound=compound, name="南宫小区",
                             buildings=["b1"], gates=["g1", "g2"])
            await reg.ok("register_household", community=COMMUNITY, compound="nangong-1", building="b1",
                         address="b1 101", household="h-1")
            await reg.ok("register_resident", household="h-1", name="王小伟", id_number="11010519491231002X",
                         birth_year=1949, resident="r-1")
            await settle(db, "SELECT count(*) = 1 FROM checkpoint.dir_residents")
            w = World(nc, db)
            await w.chk.ok("issue_passes", community=COMMUNITY, compound="nangong-1", households=["h-1"])
            await w.chk.ok("check_passage", resident="r-1", passage="p-taken", **PASSAGE)
            await settle(db, "SELECT count(*) = 0 FROM checkpoint.outbox")
            try:
                yield w
            finally:
                await db.close()
                await nc.close()
    finally:
        await server.stop()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(pg_server.dsn)
            await conn.execute(f'drop database if exists "{name}" with (force)')
            await conn.close()


@pytest.mark.parametrize("bad", [pytest.param(b, id=k) for k, b in CASES.items()])
async def test_bad_input_gets_a_clear_error_and_writes_nothing(world, bad):
    before = await world.counts()
    reply = await world.chk.raw(bad.command, bad.raw)
    assert reply["ok"] is False, reply
    error = reply["error"]
    assert error["code"] == bad.code, error
    assert error["message"] and len(error["message"]) > 15
    if bad.field is not None:
        assert error.get("field") == bad.field, error
    if bad.reason is not None:
        assert error.get("reason") == bad.reason, error
    assert await world.counts() == before


async def test_after_the_barrage_nothing_reached_the_bus_and_the_service_still_serves(world):
    published = await world.stream_messages()
    assert published == 4 + 2  # the registry's four; one pass, one passage; nothing refused
    reply = await world.chk.ok("check_passage", visitor=VISITOR, **{**PASSAGE, "direction": "in"})
    assert reply["decision"] == {"allowed": True, "reason": None}
    assert await world.db.fetchval("SELECT count(*) FROM checkpoint.visitors WHERE personal IS NOT NULL") == 1
