"""Pass numbers are credentials: whoever reads one walks through the gate with it. The number goes to
the caller of issue_passes / replace_pass and lives in the checkpoint's passes table, where the gate
looks it up; no event carries it, so the stream, every events table and everyone reading them (the
views, the audit log, a community's feed) never see one. On real NATS and PostgreSQL, next to a
real registry.

And a checkpoint whose record was written before (schema-1 events, with the numbers in them) goes on
from that record: its passes count, revoke and replace, and let their holders through.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.checkpoint import numbers
from services.checkpoint.app import spec as checkpoint_spec
from services.registry.app import spec as registry_spec
from shared import envelope as env
from shared import store
from shared.contracts.checkpoint import PassIssuedV1
from shared.subjects import event_subject
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, read_stream, resident, running

pytestmark = pytest.mark.integration

AT = datetime(2022, 4, 2, 6, 0, tzinfo=timezone(timedelta(hours=8)))
#: A number of the right shape that no pass has: a forgery, or a valid number mistyped.
UNKNOWN = numbers.encode(12345)


async def _setup(nc, db) -> tuple[Client, list[str], str]:
    """A compound under closed management (passes needed both ways), three households, a resident."""
    reg, chk = Client(nc), Client(nc, service="checkpoint")
    await community(reg, gates=("g1",))
    homes = [await household(reg) for _ in range(3)]
    holder = await resident(reg, homes[0])
    await eventually(lambda: db.fetchval("SELECT 1 FROM checkpoint.dir_residents WHERE resident = $1", holder))
    await chk.ok("set_control_level", community=COMMUNITY, compound="nangong-1", level="closed")
    return chk, homes, holder


async def _gate(chk: Client, pass_: str, **who) -> str | None:
    reply = await chk.ok("check_passage", community=COMMUNITY, compound="nangong-1", gate="g1", direction="out",
                         temperature_c=36.5, **{"pass": pass_}, **who)
    return reply["decision"]["reason"]


async def _recorded(db) -> dict[str, list[bytes]]:
    """Every row of every service's events table, by schema."""
    schemas = await db.fetch("SELECT table_schema FROM information_schema.tables WHERE table_name = 'events'")
    return {s: [bytes(r[0]) for r in await db.fetch(f"SELECT envelope FROM {s}.events")]
            for s in (r[0] for r in schemas)}


async def test_pass_numbers_go_to_the_caller_and_the_passes_table_never_onto_the_bus(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), running(checkpoint_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        chk, homes, holder = await _setup(nc, db)

        # given passes issued to three households: the numbers are in the reply, once and again
        body = dict(command_id="issue-1", actor="staff:li-wei", community=COMMUNITY, compound="nangong-1",
                    households=homes)
        issued = await chk.raw("issue_passes", json.dumps(body).encode())
        assert issued["ok"] and len(issued["passes"]) == 3
        assert await chk.raw("issue_passes", json.dumps(body).encode()) == issued  # the stored reply, numbers too
        mine, lost, stolen = (p["number"] for p in issued["passes"])
        # when one is replaced and one revoked, both by number, as the staff read them off the card
        replaced = await chk.ok("replace_pass", reason="lost", **{"pass": lost})
        new = replaced["replacement"]["number"]
        await chk.ok("revoke_pass", reason="stolen", **{"pass": stolen})

        # then the gate knows them by number: the holder goes through, as typed by a guard
        typed = f"{mine[:5].lower()}-{mine[5:]}"
        assert await _gate(chk, typed, resident=holder) is None
        assert await _gate(chk, new) is None
        assert [await _gate(chk, n) for n in (lost, stolen, UNKNOWN)] == ["no_valid_pass"] * 3

        # and no number is in any recorded event, nor in any message on the stream
        secrets = {mine, lost, stolen, new, UNKNOWN, typed}
        assert len({mine, lost, stolen, new}) == 4 and all(len(n) == 10 for n in (mine, lost, stolen, new))
        await eventually(lambda: db.fetchval("SELECT NOT EXISTS (SELECT FROM checkpoint.outbox) "
                                             "AND NOT EXISTS (SELECT FROM registry.outbox)"))
        recorded = await _recorded(db)
        assert {"registry", "checkpoint"} <= set(recorded)
        rows = [row for schema_rows in recorded.values() for row in schema_rows]
        assert len(recorded["checkpoint"]) == 1 + 3 + 2 + 1 + 5  # level, issued, replaced, revoked, passages
        assert [(s, n) for s, schema_rows in recorded.items() for row in schema_rows for n in secrets
                if n.encode() in row] == []
        msgs = await read_stream(nats_url, expect=len(rows))
        assert len(msgs) == len(rows)
        assert [(m.subject, n) for m in msgs for n in secrets if n.encode() in m.data] == []

        # the events name the passes by id; a number that matched none left only "a pass was shown"
        data = [json.loads(m.data)["data"] for m in msgs if m.subject.endswith((".PassageAllowed", ".PassageDenied"))]
        assert [(d["pass"] is not None, d["pass_shown"]) for d in data] == [(True, True)] * 4 + [(False, True)]
        by_number = {r["number"]: r["pass"] for r in await db.fetch("SELECT pass, number FROM checkpoint.passes")}
        assert {mine, lost, stolen, new} <= set(by_number)  # where the numbers live
        assert [d["pass"] for d in data[:4]] == [by_number[n] for n in (mine, new, lost, stolen)]
        await db.close()
        await nc.close()


async def _record_schema_1(db, events: list[PassIssuedV1]) -> None:
    """Write passes as the checkpoint did before pass numbers left the bus: schema-1 events (numbers
    in them) in its record and outbox, and the passes table's rows."""
    rows = [store.NewEvent(
        event_id=(e := env.wrap(event, stream_id=f"passes:{event.household}", stream_version=v, occurred_at=AT,
                                actor="staff:li-wei", correlation_id="before")).event_id,
        stream_id=e.stream_id, version=v, type="PassIssued", community=COMMUNITY, recorded_at=e.recorded_at,
        envelope=env.encode(e), subject=event_subject(COMMUNITY, "checkpoint", "PassIssued"))
        for event, v in zip(events, _versions(events))]
    assert all(b'"schema":1' in r.envelope and b'"number"' in r.envelope for r in rows)
    async with db.transaction():
        await store.append(db, "checkpoint", rows)
        for event in events:
            await db.execute("INSERT INTO checkpoint.passes (pass, number, community, compound, household, issued_at) "
                             "VALUES ($1, $2, $3, $4, $5, $6)", event.pass_, event.number, event.community,
                             event.compound, event.household, event.issued_at)


def _versions(events) -> list[int]:
    """Each event's version in its household's stream."""
    versions, seen = [], {}
    for e in events:
        seen[e.household] = seen.get(e.household, 0) + 1
        versions.append(seen[e.household])
    return versions


async def test_a_record_of_schema_1_pass_events_counts_revokes_replaces_and_lets_through(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), running(checkpoint_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        chk, homes, holder = await _setup(nc, db)
        # given two passes of the first household and one of the second, recorded in schema 1
        old = [PassIssuedV1(community=COMMUNITY, pass_=str(uuid.UUID(int=i + 1)), number=numbers.encode(7_000 + i),
                            compound="nangong-1", household=h, issued_at=AT, issued_by="staff:li-wei")
               for i, h in enumerate((homes[0], homes[0], homes[1]))]
        await _record_schema_1(db, old)

        # when the compound is topped up to two passes a household: the schema-1 passes count
        topped = await chk.ok("issue_passes", community=COMMUNITY, compound="nangong-1", all_households=True,
                              per_household=2)
        assert sorted(p["household"] for p in topped["passes"]) == sorted([homes[1], homes[2], homes[2]])
        assert (topped["issued"], topped["skipped"]) == (3, 1)

        # when a schema-1 pass is revoked by its number and another replaced: schema 2 goes on the stream
        revoked = await chk.ok("revoke_pass", reason="lost", **{"pass": old[0].number})
        [event] = revoked["events"]
        assert (event["type"], event["schema"], event["stream_version"]) == ("PassRevoked", 2, 3)
        assert event["data"]["pass"] == old[0].pass_ and "number" not in event["data"]
        replaced = await chk.ok("replace_pass", reason="damaged", **{"pass": old[2].pass_})  # by its id
        assert [(e["type"], e["schema"], e["stream_version"]) for e in replaced["events"]] == [
            ("PassRevoked", 2, 3), ("PassIssued", 2, 4)]  # after schema-1 v1 and the top-up's v2

        # then the holder of the remaining schema-1 pass goes through by its number; the revoked does not
        assert await _gate(chk, old[1].number, resident=holder) is None
        assert await _gate(chk, old[0].number, resident=holder) == "no_valid_pass"
        assert await _gate(chk, old[2].number) == "no_valid_pass"
        assert await _gate(chk, replaced["replacement"]["number"]) is None
        await db.close()
        await nc.close()
