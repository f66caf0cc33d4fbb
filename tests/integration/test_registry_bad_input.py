"""Bad input on every registry subject, through the wire, against real NATS and PostgreSQL.

The story: a committee's registry is running with a compound, a household, two residents and a few
arrivals in it. Then integrators, phones and scripts send it everything that can go wrong: bytes that
are not JSON, arrays where an object belongs, quoted numbers, missing and unknown fields, ids that
would break the subject tree, impossible dates, a mistyped ID card, payloads over the limit, commands
that do not exist, and well-formed commands the rules refuse. Each one gets

    {"ok": false, "error": {"code": <stable code>, "message": <what to fix>, "field"/"reason": ...}}

and leaves no trace: no event, no command reply stored, no outbox row, no personal data, nothing on
the CORDON stream. After the barrage the same service still accepts valid commands.

One service serves the whole module (it is started once, with its own NATS and database), so the
several hundred cases cost milliseconds each; every case checks the record before and after itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from services.registry.app import spec
from shared.embedded import ensure_database
from shared.errors import CODES
from shared.subjects import STREAM
from tests.support.bus import connect, start_secure_nats
from tests.support.cordon import COMMUNITY, Client, prc_id, running

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024  # Config.max_payload: the service refuses anything larger with too_large
SUBJECT = "cordon.cmd.registry"
TABLES = ("events", "commands", "outbox", "residents")
_n = itertools.count(1)

# -- what the valid setup leaves in the record ------------------------------------------------------

R1_ID_NUMBER = prc_id(9110)
SETUP = [  # (command, fields): every one must be accepted
    ("register_compound", dict(community=COMMUNITY, compound="nangong-1", name="南宫小区",
                               buildings=["b1", "b2"], gates=["g1"])),
    ("register_household", dict(community=COMMUNITY, compound="nangong-1", building="b1",
                                address="b1 room 101", household="h-1")),
    ("register_resident", dict(household="h-1", name="王小伟", id_number=R1_ID_NUMBER, birth_year=1950,
                               resident="r-1")),
    ("register_resident", dict(household="h-1", name="王小丽", id_number=prc_id(9120), birth_year=1952,
                               resident="r-gone")),
    # class A via a risk area: waits for verification
    ("register_arrival", dict(resident="r-1", origin="Wuhan", arrived_on="2020-02-01",
                              transport={"kind": "train", "number": "G1722"},
                              visited=[{"place": "Wuhan", "from": "2020-01-20", "to": "2020-01-31"}],
                              city_class="A", risk_area_visited=True, arrival="a-pending")),
    # a false A: class A, but the train only passed through
    ("register_arrival", dict(resident="r-1", origin="Guangzhou", arrived_on="2020-02-02",
                              transport={"kind": "train", "number": "G80"}, visited=[],
                              city_class="A", risk_area_visited=False, arrival="a-false-a")),
    # class B, no risk area: cleared on registration
    ("register_arrival", dict(resident="r-1", origin="Hangzhou", arrived_on="2020-02-03",
                              transport={"kind": "road"}, visited=[], city_class="B",
                              risk_area_visited=False, arrival="a-cleared")),
    ("register_arrival", dict(resident="r-gone", origin="Wuhan", arrived_on="2020-02-01",
                              transport={"kind": "flight", "number": "MU2527"}, visited=[],
                              city_class="A", risk_area_visited=True, arrival="a-gone")),
    ("move_out", dict(resident="r-gone", reason="moved to her daughter's")),
]
SETUP_COUNTS = {"events": 9, "commands": 9, "outbox": 0, "residents": 2, "stream": 9}

# -- one valid payload per command; every bad case changes exactly one thing -------------------------
# Sent in this order after the barrage, each is accepted: the change was what made the case fail.

VALID: dict[str, dict[str, Any]] = {
    "register_compound": dict(community=COMMUNITY, compound="nangong-9", name="南宫九村",
                              buildings=["b1"], gates=["g1"]),
    "register_household": dict(community=COMMUNITY, compound="nangong-1", building="b1",
                               address="b1 room 901", household="h-final"),
    "register_resident": dict(household="h-final", name="李四", id_number=prc_id(9130), birth_year=1980,
                              phone="+8613900000000", vulnerabilities=["chronic_illness"], resident="r-final"),
    "register_arrival": dict(resident="r-final", origin="Wuhan", arrived_on="2020-02-01",
                             transport={"kind": "train", "number": "G1"},
                             visited=[{"place": "Wuhan", "from": "2020-01-20", "to": "2020-01-31"}],
                             city_class="A", risk_area_visited=True, arrival="a-final"),
    "verify_arrival": dict(arrival="a-final", outcome="centralized_quarantine", documents_checked=True,
                           note="ID card and ticket checked"),
    "move_out": dict(resident="r-final", reason="moved to another district"),
}
COMMANDS = list(VALID)
REQUIRED = {
    "register_compound": ["community", "compound", "name", "buildings", "gates"],
    "register_household": ["community", "compound", "building", "address"],
    "register_resident": ["household", "name", "id_number", "birth_year"],
    "register_arrival": ["resident", "origin", "arrived_on", "transport", "visited", "city_class",
                         "risk_area_visited"],
    "verify_arrival": ["arrival", "outcome", "documents_checked"],
    "move_out": ["resident"],
}
#: The free-text field of each command, padded to make a payload too large.
TEXT = {"register_compound": "name", "register_household": "address", "register_resident": "name",
        "register_arrival": "origin", "verify_arrival": "note", "move_out": "reason"}
#: The slug ids each command carries (a community path is checked separately).
SLUG_FIELDS = {
    "register_compound": ["compound", "buildings[0]", "gates[0]"],
    "register_household": ["compound", "building", "household"],
    "register_resident": ["household", "resident"],
    "register_arrival": ["resident", "arrival"],
    "verify_arrival": ["arrival"],
    "move_out": ["resident"],
}
BAD_SLUGS = {"upper": "Nangong-1", "dot": "nangong.1", "star": "nangong*", "gt": ">", "space": "nan gong",
             "empty": "", "leading-dash": "-nangong", "too-long": "x" * 64, "non-ascii": "南宫"}
BAD_COMMUNITIES = {"upper": "Changning.chengjiaqiao.nangong", "two-tokens": "changning.chengjiaqiao",
                   "four-tokens": "changning.chengjiaqiao.nangong.x", "empty-token": "changning..nangong",
                   "trailing-dot": "changning.chengjiaqiao.nangong.", "star": "changning.*.nangong",
                   "gt": "changning.chengjiaqiao.>", "space": "changning.cheng jiaqiao.nangong",
                   "empty": ""}


def body(command: str, /, drop: tuple[str, ...] = (), **changes) -> dict:
    """The valid payload of ``command`` with a fresh command_id, ``changes`` applied, ``drop`` removed."""
    out = {"command_id": f"bad-{next(_n)}", "actor": "staff:li-wei", **VALID[command], **changes}
    for key in drop:
        out.pop(key)
    return out


def set_path(payload: dict, path: str, value: Any) -> dict:
    """``buildings[0]`` -> payload["buildings"][0] = value (on a copy)."""
    payload = json.loads(json.dumps(payload))
    if path.endswith("]"):
        name, index = path[:-1].split("[")
        payload[name][int(index)] = value
    else:
        payload[path] = value
    return payload


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def sized(command: str, size: int) -> bytes:
    """A JSON payload of ``command`` exactly ``size`` bytes long, its free-text field padded."""
    field = TEXT[command]
    base = body(command, **{field: ""})
    pad = size - len(encode(base))
    payload = encode({**base, field: "x" * pad})
    assert len(payload) == size
    return payload


@dataclass(frozen=True)
class Bad:
    """A request the registry must refuse: where it goes, what it carries, and the reply expected."""

    command: str
    payload: bytes | dict
    code: str
    field: str | None = None  # the error's ``field``, when the fix is in one field
    says: str | None = None  # a phrase the message must contain (what to fix)
    reason: str | None = None  # the ``reason`` of a rejected command
    names: bool = True  # the message names the field (``id_number`` may read "ID number")

    @property
    def raw(self) -> bytes:
        return self.payload if isinstance(self.payload, bytes) else encode(self.payload)


def cases(make) -> list:
    """``make()`` yields (id, Bad); returns pytest params."""
    return [pytest.param(bad, id=case_id) for case_id, bad in make()]


# -- the record, before and after ------------------------------------------------------------------


@dataclass
class World:
    client: Client
    nc: Any
    db: asyncpg.Connection

    async def counts(self) -> dict:
        out = {t: await self.db.fetchval(f"SELECT count(*) FROM registry.{t}") for t in TABLES}
        out["stream"] = (await self.nc.jetstream().stream_info(STREAM)).state.messages
        return out

    async def settled(self, expect: dict, timeout: float = 10.0) -> dict:
        """Counts once the relay has published everything (outbox empty, stream caught up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = await self.counts()
            if now == expect or loop.time() > deadline:
                return now
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
async def world(pg_server, tmp_path_factory):
    """One registry, its own NATS and database, with the SETUP story already in the record."""
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-bad-input"))
    name = f"test_bad_{uuid.uuid4().hex[:12]}"
    dsn = await ensure_database(pg_server.dsn, name)
    try:
        async with running(spec(), server.url, dsn):
            nc = await connect(server.url)
            db = await asyncpg.connect(dsn)
            world = World(Client(nc), nc, db)
            try:
                for command, fields in SETUP:
                    await world.client.ok(command, **fields)
                assert await world.settled(SETUP_COUNTS) == SETUP_COUNTS
                yield world
            finally:
                await db.close()
                await nc.close()
    finally:
        await server.stop()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(pg_server.dsn)
            try:
                await conn.execute(f'drop database if exists "{name}" with (force)')
            finally:
                await conn.close()


async def refused(world: World, bad: Bad, subject: str | None = None) -> dict:
    """Send ``bad``; check the reply is the expected refusal and that nothing was written."""
    before = await world.counts()
    msg = await world.nc.request(subject or f"{SUBJECT}.{bad.command}", bad.raw, timeout=5)
    reply = json.loads(msg.data)
    assert reply.get("ok") is False and set(reply) == {"ok", "error"}, reply
    error = reply["error"]
    assert error["code"] == bad.code, reply
    assert error["code"] in CODES
    assert isinstance(error["message"], str) and error["message"].strip(), reply
    assert set(error) <= {"code", "message", "field", "reason"}, reply
    if bad.field is not None:
        assert error.get("field") == bad.field, reply
        root = re.split(r"[\[.]", bad.field)[0]
        assert not bad.names or root in error["message"] or \
            root.replace("_", " ") in error["message"].lower(), f"the message does not name {root}: {reply}"
    if bad.says is not None:
        assert bad.says in error["message"], reply
    if bad.reason is not None:
        assert error.get("reason") == bad.reason, reply
    assert await world.counts() == before, f"a refused command wrote something: {reply}"
    return error


# == not an object at all ==========================================================================

NOT_OBJECTS = {
    "not-json": (b"{not json", "not valid JSON"),
    "truncated-json": (b'{"command_id": "c-1", "actor": ', "not valid JSON"),
    "xml": (b"<register/>", "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "not valid JSON"),
    "lone-surrogate": (b'{"command_id": "\\ud800"}', "not valid JSON"),
    "empty": (b"", "empty payload"),
    "whitespace": (b" \r\n\t ", "empty payload"),
    "array": (b"[]", "must be a JSON object, got array"),
    "array-of-object": (b'[{"command_id": "c-1"}]', "must be a JSON object, got array"),
    "deep-array": (b"[" * 10_000 + b"]" * 10_000, "must be a JSON object, got array"),
    "string": (b'"register"', "must be a JSON object, got str"),
    "number": (b"42", "must be a JSON object, got int"),
    "float": (b"4.2", "must be a JSON object, got float"),
    "true": (b"true", "must be a JSON object, got bool"),
    "null": (b"null", "must be a JSON object, got null"),
}


def _not_objects():
    for command in COMMANDS:
        for name, (payload, says) in NOT_OBJECTS.items():
            yield f"{command}-{name}", Bad(command, payload, "invalid", says=says)


@pytest.mark.parametrize("bad", cases(_not_objects))
async def test_a_payload_that_is_not_a_json_object_is_invalid(world, bad):
    error = await refused(world, bad)
    assert bad.command in error["message"] or "payload" in error["message"]


# == the common fields: command_id, actor, occurred_at, expected_version, unknown fields =============


def _common():
    for c in COMMANDS:
        yield f"{c}-no-command_id", Bad(c, body(c, drop=("command_id",)), "invalid", "command_id", "required")
        yield f"{c}-no-actor", Bad(c, body(c, drop=("actor",)), "invalid", "actor", "required")
        yield f"{c}-empty-command_id", Bad(c, body(c, command_id=""), "invalid", "command_id", "empty")
        yield f"{c}-blank-command_id", Bad(c, body(c, command_id="   "), "invalid", "command_id", "empty")
        yield f"{c}-numeric-command_id", Bad(c, body(c, command_id=17), "invalid", "command_id", "str")
        yield f"{c}-long-command_id", Bad(c, body(c, command_id="c" * 129), "invalid", "command_id", "128")
        yield f"{c}-actor-with-space", Bad(c, body(c, actor="li wei"), "invalid", "actor", "whitespace")
        yield f"{c}-actor-null", Bad(c, body(c, actor=None), "invalid", "actor", "null")
        yield f"{c}-occurred_at-no-zone", Bad(c, body(c, occurred_at="2020-02-01T09:30:00"), "invalid",
                                              "occurred_at", "zone")
        yield f"{c}-occurred_at-words", Bad(c, body(c, occurred_at="yesterday"), "invalid", "occurred_at",
                                            "RFC 3339")
        yield f"{c}-occurred_at-date-only", Bad(c, body(c, occurred_at="2020-02-01"), "invalid",
                                                "occurred_at")
        yield f"{c}-expected_version-quoted", Bad(c, body(c, expected_version="1"), "invalid",
                                                  "expected_version", "must not be quoted")
        yield f"{c}-expected_version-negative", Bad(c, body(c, expected_version=-1), "invalid",
                                                    "expected_version", "0 or more")
        yield f"{c}-unknown-field", Bad(c, body(c, colour="red"), "invalid", "colour", "does not accept")
        yield f"{c}-misspelt-field", Bad(c, body(c, command_ID="x"), "invalid", "command_ID",
                                         "does not accept")
        # PostgreSQL text cannot hold NUL: refused up front, never a failed (`internal`) batch
        for f in ("command_id", "actor", TEXT[c]):
            yield f"{c}-nul-in-{f}", Bad(c, body(c, **{f: "li\u0000wei"}), "invalid", f, "NUL")


@pytest.mark.parametrize("bad", cases(_common))
async def test_the_common_fields_are_checked_on_every_command(world, bad):
    await refused(world, bad)


# == missing required fields: the error names the field ============================================


def _missing():
    for c, fields in REQUIRED.items():
        for f in fields:
            yield f"{c}-no-{f}", Bad(c, body(c, drop=(f,)), "invalid", f, f"{f} is required in {c}")
    transport = {"number": "G1"}
    yield "arrival-transport-no-kind", Bad("register_arrival", body("register_arrival", transport=transport),
                                           "invalid", "transport.kind", "required")
    for f in ("place", "from", "to"):
        visit = {"place": "Wuhan", "from": "2020-01-20", "to": "2020-01-31"}
        visit.pop(f)
        yield f"arrival-visit-no-{f}", Bad("register_arrival", body("register_arrival", visited=[visit]),
                                           "invalid", f"visited[0].{f}", "required")
    yield "everything-missing", Bad("move_out", b"{}", "invalid", "command_id", "required")


@pytest.mark.parametrize("bad", cases(_missing))
async def test_a_missing_required_field_is_named(world, bad):
    await refused(world, bad)


# == wrong types and wrong values ==================================================================


def _wrong():
    c = "register_compound"
    yield "compound-name-number", Bad(c, body(c, name=42), "invalid", "name", "Expected `str`, got `int`")
    yield "compound-name-blank", Bad(c, body(c, name="  "), "invalid", "name", "empty")
    yield "compound-name-too-long", Bad(c, body(c, name="南" * 201), "invalid", "name", "at most 200")
    yield "compound-buildings-string", Bad(c, body(c, buildings="b1"), "invalid", "buildings", "array")
    yield "compound-buildings-empty", Bad(c, body(c, buildings=[]), "invalid", "buildings", "at least one")
    yield "compound-buildings-twice", Bad(c, body(c, buildings=["b1", "b1"]), "invalid", "buildings[1]", "twice")
    yield "compound-gates-number", Bad(c, body(c, gates=[1]), "invalid", "gates[0]", "Expected `str`")
    yield "compound-gates-object", Bad(c, body(c, gates={"g1": True}), "invalid", "gates", "array")
    yield "compound-community-number", Bad(c, body(c, community=7), "invalid", "community", "str")
    yield "compound-compound-null", Bad(c, body(c, compound=None), "invalid", "compound", "null")

    c = "register_household"
    yield "household-address-number", Bad(c, body(c, address=12), "invalid", "address", "str")
    yield "household-address-blank", Bad(c, body(c, address=""), "invalid", "address", "empty")
    yield "household-building-list", Bad(c, body(c, building=["b1"]), "invalid", "building", "array")
    yield "household-household-number", Bad(c, body(c, household=5), "invalid", "household", "int")

    c = "register_resident"
    yield "resident-birth_year-quoted", Bad(c, body(c, birth_year="1950"), "invalid", "birth_year",
                                            "numbers and booleans must not be quoted")
    yield "resident-birth_year-float", Bad(c, body(c, birth_year=1950.5), "invalid", "birth_year", "int")
    yield "resident-birth_year-bool", Bad(c, body(c, birth_year=True), "invalid", "birth_year", "int")
    yield "resident-birth_year-too-old", Bad(c, body(c, birth_year=1800), "invalid", "birth_year", "between")
    yield "resident-birth_year-huge", Bad(c, body(c, birth_year=10**30), "invalid", "birth_year")
    # not born yet: only the receive time decides, so this passes parsing and fails on completion
    next_year = dt.datetime.now(dt.timezone.utc).year + 1
    yield "resident-birth_year-next-year", Bad(c, body(c, birth_year=next_year), "invalid", "birth_year",
                                               "between")
    yield "resident-name-number", Bad(c, body(c, name=42), "invalid", "name", "Expected `str`, got `int`")
    yield "resident-name-blank", Bad(c, body(c, name=" "), "invalid", "name", "empty")
    yield "resident-id_number-number", Bad(c, body(c, id_number=310105195001010011), "invalid", "id_number",
                                           "str")
    yield "resident-id_number-short", Bad(c, body(c, id_number="1234"), "invalid", "id_number", "passport")
    yield "resident-id_number-lowercase-x", Bad(c, body(c, id_number=prc_id(9130)[:17] + "x"), "invalid",
                                                "id_number", "uppercase X")
    good = prc_id(9130)
    wrong_digit = good[:17] + ("1" if good[17] != "1" else "2")
    yield "resident-id_number-check-digit", Bad(c, body(c, id_number=wrong_digit), "invalid", "id_number",
                                                "check digit is wrong")
    yield "resident-phone-number", Bad(c, body(c, phone=13900000000), "invalid", "phone", "str")
    yield "resident-phone-dashes", Bad(c, body(c, phone="139-0000-0000"), "invalid", "phone", "digits")
    yield "resident-vulnerabilities-string", Bad(c, body(c, vulnerabilities="elderly_alone"), "invalid",
                                                 "vulnerabilities", "array")
    yield "resident-vulnerabilities-unknown", Bad(c, body(c, vulnerabilities=["flying"]), "invalid",
                                                  "vulnerabilities[0]", "elderly_alone")
    yield "resident-vulnerabilities-twice", Bad(c, body(c, vulnerabilities=["elderly_alone"] * 2), "invalid",
                                                "vulnerabilities[1]", "twice")

    c = "register_arrival"
    yield "arrival-transport-string", Bad(c, body(c, transport="train"), "invalid", "transport", "object")
    yield "arrival-transport-kind-bus", Bad(c, body(c, transport={"kind": "bus"}), "invalid", "transport.kind",
                                            "train, flight, road, other")
    yield "arrival-transport-extra", Bad(c, body(c, transport={"kind": "train", "seat": "3A"}), "invalid",
                                         "transport.seat", "does not accept")
    yield "arrival-transport-number-blank", Bad(c, body(c, transport={"kind": "train", "number": ""}),
                                                "invalid", "transport.number", "empty")
    yield "arrival-city_class-C", Bad(c, body(c, city_class="C"), "invalid", "city_class", "A, B")
    yield "arrival-city_class-lowercase", Bad(c, body(c, city_class="a"), "invalid", "city_class", "A, B")
    yield "arrival-risk-quoted", Bad(c, body(c, risk_area_visited="true"), "invalid", "risk_area_visited",
                                     "must not be quoted")
    yield "arrival-risk-number", Bad(c, body(c, risk_area_visited=1), "invalid", "risk_area_visited", "bool")
    yield "arrival-origin-blank", Bad(c, body(c, origin=""), "invalid", "origin", "empty")
    yield "arrival-visited-object", Bad(c, body(c, visited={"place": "Wuhan"}), "invalid", "visited", "array")
    yield "arrival-visit-extra", Bad(c, body(c, visited=[{"place": "Wuhan", "from": "2020-01-20",
                                                          "to": "2020-01-31", "hotel": "x"}]),
                                     "invalid", "visited[0].hotel", "does not accept")
    yield "arrival-visit-place-blank", Bad(c, body(c, visited=[{"place": " ", "from": "2020-01-20",
                                                                "to": "2020-01-31"}]),
                                           "invalid", "visited[0].place", "empty")
    visits = [{"place": f"p{i}", "from": "2020-01-20", "to": "2020-01-21"} for i in range(101)]
    yield "arrival-too-many-visits", Bad(c, body(c, visited=visits), "invalid", "visited", "at most 100")

    c = "verify_arrival"
    yield "verify-outcome-unknown", Bad(c, body(c, outcome="done"), "invalid", "outcome",
                                        "cleared, home_quarantine, centralized_quarantine, returned_home")
    yield "verify-documents-quoted", Bad(c, body(c, documents_checked="yes"), "invalid", "documents_checked",
                                         "must not be quoted")
    yield "verify-documents-null", Bad(c, body(c, documents_checked=None), "invalid", "documents_checked",
                                       "bool")
    yield "verify-note-number", Bad(c, body(c, note=5), "invalid", "note", "str")
    yield "verify-note-too-long", Bad(c, body(c, note="n" * 1001), "invalid", "note", "at most 1000")

    c = "move_out"
    yield "move_out-reason-number", Bad(c, body(c, reason=7), "invalid", "reason", "str")
    yield "move_out-reason-blank", Bad(c, body(c, reason=""), "invalid", "reason", "empty")
    yield "move_out-resident-null", Bad(c, body(c, resident=None), "invalid", "resident", "null")


@pytest.mark.parametrize("bad", cases(_wrong))
async def test_a_wrong_type_or_value_is_invalid_and_names_the_field(world, bad):
    await refused(world, bad)


# == dates =========================================================================================


def _dates():
    c = "register_arrival"
    for name, value in {"month-13": "2020-13-01", "feb-30": "2020-02-30", "slashes": "2020/02/01",
                        "day-first": "01-02-2020", "with-time": "2020-02-01T10:00:00+08:00",
                        "words": "last tuesday", "empty": ""}.items():
        yield f"arrived_on-{name}", Bad(c, body(c, arrived_on=value), "invalid", "arrived_on", "YYYY-MM-DD")
        visit = {"place": "Wuhan", "from": value, "to": "2020-01-31"}
        yield f"visit-from-{name}", Bad(c, body(c, visited=[visit]), "invalid", "visited[0].from", "YYYY-MM-DD")
    yield "arrived_on-number", Bad(c, body(c, arrived_on=20200201), "invalid", "arrived_on", "int")
    # in the future: passes parsing, refused once the receive time is known
    yield "arrived_on-future", Bad(c, body(c, arrived_on="2999-01-01"), "invalid", "arrived_on",
                                   "after the day of the command")
    # 23:00 in Shanghai on 1 February (the city's day decides, not the offset the caller wrote)
    yield "arrived_on-after-occurred_at", Bad(c, body(c, arrived_on="2020-02-02",
                                                      occurred_at="2020-02-01T15:00:00+00:00"),
                                              "invalid", "arrived_on", "after the day of the command")
    yield "visit-from-after-to", Bad(c, body(c, visited=[{"place": "Wuhan", "from": "2020-01-31",
                                                          "to": "2020-01-20"}]),
                                     "invalid", "visited[0].from", "is after to")


@pytest.mark.parametrize("bad", cases(_dates))
async def test_a_bad_date_is_invalid_and_says_the_format(world, bad):
    await refused(world, bad)


# == slugs: ids become subject tokens, so '.', '*', '>', spaces and upper case never get in =========


def _slugs():
    for c, fields in SLUG_FIELDS.items():
        for f in fields:
            for name, value in BAD_SLUGS.items():
                yield f"{c}-{f}-{name}", Bad(c, set_path(body(c), f, value), "invalid", f, "slug")
    for c in ("register_compound", "register_household"):
        for name, value in BAD_COMMUNITIES.items():
            yield f"{c}-community-{name}", Bad(c, body(c, community=value), "invalid", "community")


@pytest.mark.parametrize("bad", cases(_slugs))
async def test_an_id_that_is_not_a_slug_is_invalid(world, bad):
    await refused(world, bad)


# == size ==========================================================================================


def _sizes():
    for c in COMMANDS:
        yield f"{c}-one-byte-over", Bad(c, sized(c, LIMIT + 1), "too_large", says=str(LIMIT))
        yield f"{c}-900KiB", Bad(c, sized(c, 900 * 1024), "too_large", says=str(LIMIT))
        yield f"{c}-900KiB-not-json", Bad(c, b"x" * (900 * 1024), "too_large", says=str(LIMIT))
        # at the limit the size is fine; the padded text field is what is wrong
        yield f"{c}-at-the-limit", Bad(c, sized(c, LIMIT), "invalid", TEXT[c], "at most")


@pytest.mark.parametrize("bad", cases(_sizes))
async def test_a_payload_over_the_limit_is_too_large(world, bad):
    assert len(bad.raw) < 1024 * 1024  # still a legal NATS message: the service, not NATS, refuses it
    await refused(world, bad)


# == subjects that are no command ==================================================================


UNKNOWN = {"nope": b"{}", "a.b": b"{}", "register_compound.extra": encode(body("register_compound")),
           "Register_Compound": encode(body("register_compound")),
           "register-compound": encode(body("register_compound")), "registerCompound": b"",
           "open_case": b"{}", "nope-too-large": b"x" * (LIMIT + 1)}


@pytest.mark.parametrize("name", list(UNKNOWN))
async def test_an_unknown_command_subject_is_unknown_command_and_lists_the_commands(world, name):
    subject = f"{SUBJECT}.{name.removesuffix('-too-large')}"
    error = await refused(world, Bad("-", UNKNOWN[name], "unknown_command"), subject=subject)
    assert repr(name.removesuffix("-too-large")) in error["message"], error
    for command in COMMANDS:
        assert command in error["message"], error


# == well-formed commands the record refuses ========================================================


def _domain():
    v, r, a, m = "verify_arrival", "register_resident", "register_arrival", "move_out"
    h, c = "register_household", "register_compound"
    yield "verify-unknown-arrival", Bad(v, body(v, arrival="a-nowhere"), "not_found", "arrival", "a-nowhere")
    yield "clear-without-documents", Bad(v, body(v, arrival="a-pending", outcome="cleared",
                                                 documents_checked=False),
                                         "rejected", says="documents_checked", reason="documents_not_checked")
    yield "false-a-into-home-quarantine", Bad(v, body(v, arrival="a-false-a", outcome="home_quarantine",
                                                      documents_checked=True),
                                              "rejected", says="cleared", reason="false_a_must_be_cleared")
    yield "verify-an-arrival-cleared-on-registration", Bad(v, body(v, arrival="a-cleared"), "rejected",
                                                           reason="not_pending")
    yield "home-quarantine-after-moving-out", Bad(v, body(v, arrival="a-gone", outcome="home_quarantine"),
                                                  "rejected", says="centralized_quarantine",
                                                  reason="no_household_here")
    yield "verify-stale-expected_version", Bad(v, body(v, arrival="a-pending", expected_version=7), "conflict",
                                               "expected_version", "version 1", names=False)
    yield "same-id-number-twice", Bad(r, body(r, household="h-1", id_number=R1_ID_NUMBER), "conflict",
                                      "id_number", "already registered")
    yield "resident-id-taken", Bad(r, body(r, household="h-1", resident="r-1"), "conflict", "resident", "taken")
    yield "resident-unknown-household", Bad(r, body(r, household="h-nowhere"), "not_found", "household",
                                            "h-nowhere")
    yield "compound-registered-twice", Bad(c, body(c, compound="nangong-1"), "conflict", "compound",
                                           "already registered")
    yield "household-id-taken", Bad(h, body(h, household="h-1"), "conflict", "household", "taken")
    yield "household-unknown-compound", Bad(h, body(h, compound="nowhere"), "not_found", "compound", "nowhere")
    yield "household-unknown-building", Bad(h, body(h, building="b9"), "not_found", "building", "b1, b2")
    yield "household-other-community", Bad(h, body(h, community="xuhui.tianping.hengshan"), "not_found",
                                           "compound", "xuhui.tianping.hengshan")
    yield "arrival-unknown-resident", Bad(a, body(a, resident="r-nowhere"), "not_found", "resident",
                                          "r-nowhere")
    yield "arrival-of-a-resident-who-moved-out", Bad(a, body(a, resident="r-gone"), "rejected",
                                                     says="moved out", reason="moved_out")
    yield "arrival-id-taken", Bad(a, body(a, resident="r-1", arrival="a-pending"), "conflict", "arrival",
                                  "taken")
    yield "move-out-unknown-resident", Bad(m, body(m, resident="r-nowhere"), "not_found", "resident",
                                           "r-nowhere")
    yield "move-out-twice", Bad(m, body(m, resident="r-gone"), "rejected", says="already moved out",
                                reason="moved_out")


@pytest.mark.parametrize("bad", cases(_domain))
async def test_a_command_the_rules_refuse_says_why_and_writes_nothing(world, bad):
    error = await refused(world, bad)
    if bad.code == "rejected":
        assert error.get("reason"), error


# == and after all that, the service still serves ===================================================


async def test_after_the_barrage_nothing_was_written_and_valid_commands_are_accepted(world):
    # the relay has had the whole barrage to publish anything it was given: it was given nothing
    assert await world.settled(SETUP_COUNTS, timeout=0.5) == SETUP_COUNTS
    expected = dict(SETUP_COUNTS)
    for command in COMMANDS:  # the very payloads every case above was a variation of
        valid = body(command)
        # a refusal is not remembered as the command's reply: the same command_id, fixed, is judged anew
        await refused(world, Bad(command, {**valid, "actor": "li wei"}, "invalid", "actor"))
        # and bad commands arriving together with a good one do not take it down with them
        bad = [encode(body(command, **{TEXT[command]: "bad\u0000"})) for _ in range(5)]
        replies = await asyncio.gather(world.client.raw(command, encode(valid)),
                                       *[world.client.raw(command, b) for b in bad])
        assert replies[0]["ok"] is True, (command, replies[0])
        assert [r["error"]["code"] for r in replies[1:]] == ["invalid"] * 5, replies[1:]
        expected = {**expected, "events": expected["events"] + 1, "commands": expected["commands"] + 1,
                    "stream": expected["stream"] + 1,
                    "residents": expected["residents"] + (command == "register_resident")}
        assert await world.settled(expected) == expected
    assert expected == {"events": 15, "commands": 15, "outbox": 0, "residents": 3, "stream": 15}
