"""The audit service on real NATS and PostgreSQL: every event once, a chain that catches tampering."""
from __future__ import annotations

import argparse
import asyncio
import json

import asyncpg
import pytest

from services.audit import cli as audit_cli
from services.audit import log
from services.audit.app import spec
from shared.config import Config
from shared.contracts.checkpoint import PassageAllowed
from tests.support.views import C, C2, D, Stream, at, ev, query, scripted_day
from tests.support.cordon import running

pytestmark = pytest.mark.integration


async def wait_audited(pg_dsn: str, seq: int, timeout: float = 10.0) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await conn.fetchval("SELECT hwm FROM audit.head") or 0) < seq:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"audit did not reach {seq}")
            await asyncio.sleep(0.03)
    finally:
        await conn.close()


async def audited_day(nats_url: str, pg_dsn: str) -> Stream:
    """The scripted day, audited; the service stopped again."""
    s = await Stream.connect(nats_url)
    await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_audited(pg_dsn, s.last_seq)
    return s


async def tamper(pg_dsn: str, *statements: str) -> None:
    """What someone with the database owner's rights could do: switch off the guard and edit."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit.log DISABLE TRIGGER log_append_only")
            for sql in statements:
                await conn.execute(sql)
            await conn.execute("ALTER TABLE audit.log ENABLE TRIGGER log_append_only")
    finally:
        await conn.close()


async def verify(pg_dsn: str) -> log.Verdict:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await log.verify(conn)
    finally:
        await conn.close()


async def test_every_event_is_appended_once_with_its_actor_subject_and_sequence(nats_url, pg_dsn):
    s = await audited_day(nats_url, pg_dsn)
    events = len(s.sent)
    for payload in s.sent[:5]:  # replayed under new message ids: new sequences, same events
        await s.raw(f"cordon.evt.{C}.registry.HouseholdRegistered", payload)
    async with running(spec(), nats_url, pg_dsn) as host:
        await wait_audited(pg_dsn, s.last_seq)
        assert (await host.status())["consumers"]["audit"]["lag"] == 0
    conn = await asyncpg.connect(pg_dsn)
    rows = await conn.fetch("SELECT n, stream_seq, subject, actor, envelope FROM audit.log ORDER BY n")
    head = await conn.fetchrow("SELECT n, hwm, duplicates FROM audit.head")
    await conn.close()
    assert [r["n"] for r in rows] == list(range(1, events + 1))
    assert [r["stream_seq"] for r in rows] == list(range(1, events + 1))
    assert [bytes(r["envelope"]) for r in rows] == s.sent[:events]
    assert rows[0]["subject"] == f"cordon.evt.{C}.registry.CompoundRegistered"
    assert {r["actor"] for r in rows} >= {"staff:li-wei", "staff:zhao", "staff:guard", "volunteer:v1"}
    assert (head["n"], head["hwm"], head["duplicates"]) == (events, s.last_seq, 5)
    assert (await verify(pg_dsn)).ok
    await s.close()


async def test_an_untouched_log_verifies_and_names_its_head(nats_url, pg_dsn, capsys):
    s = await audited_day(nats_url, pg_dsn)
    verdict = await verify(pg_dsn)
    assert verdict.ok and verdict.rows == verdict.head_n == len(s.sent) and len(verdict.head_hash) == 64
    capsys.readouterr()
    assert await run(["audit", "verify"], pg_dsn) == 0
    assert f"audit log OK: {len(s.sent)} rows" in capsys.readouterr().out
    await s.close()


async def test_an_edited_row_is_caught_at_that_row(nats_url, pg_dsn, capsys):
    s = await audited_day(nats_url, pg_dsn)
    # Row 14 is the arrival staff:zhao verified; someone puts it on a colleague.
    await tamper(pg_dsn, "UPDATE audit.log SET envelope = convert_to(replace(convert_from(envelope, 'UTF8'), "
                         "'staff:zhao', 'staff:li-wei'), 'UTF8') WHERE n = 14 AND type = 'ArrivalVerified'")
    verdict = await verify(pg_dsn)
    assert (verdict.finding.n, verdict.finding.problem) == (14, "hash_mismatch")
    capsys.readouterr()  # the service's log lines so far
    assert await run(["audit", "verify"], pg_dsn) == 1
    out = capsys.readouterr()
    assert "BROKEN at row 14" in out.err and json.loads(out.out)["first_bad_row"]["n"] == 14
    await s.close()


async def test_a_deleted_row_is_caught_at_that_row(nats_url, pg_dsn):
    s = await audited_day(nats_url, pg_dsn)
    await tamper(pg_dsn, "DELETE FROM audit.log WHERE n = 20")
    verdict = await verify(pg_dsn)
    assert (verdict.finding.n, verdict.finding.problem) == (20, "missing")
    await s.close()


async def test_a_swapped_pair_is_caught_at_the_first_row_of_the_pair(nats_url, pg_dsn):
    s = await audited_day(nats_url, pg_dsn)
    await tamper(pg_dsn, "UPDATE audit.log SET n = -1 WHERE n = 30", "UPDATE audit.log SET n = 30 WHERE n = 31",
                 "UPDATE audit.log SET n = 31 WHERE n = -1")
    verdict = await verify(pg_dsn)
    assert (verdict.finding.n, verdict.finding.problem) == (30, "hash_mismatch")
    await s.close()


async def test_an_edited_actor_column_is_caught(nats_url, pg_dsn):
    s = await audited_day(nats_url, pg_dsn)
    await tamper(pg_dsn, "UPDATE audit.log SET actor = 'staff:nobody' WHERE n = 7")
    verdict = await verify(pg_dsn)
    assert (verdict.finding.n, verdict.finding.problem) == (7, "column_mismatch")
    await s.close()


async def test_the_log_refuses_updates_and_deletes(nats_url, pg_dsn):
    s = await audited_day(nats_url, pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        for sql in ("UPDATE audit.log SET actor = 'x' WHERE n = 1", "DELETE FROM audit.log WHERE n = 1"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()
    assert (await verify(pg_dsn)).ok
    await s.close()


async def test_show_filters_by_actor_resident_community_type_and_time(nats_url, pg_dsn, capsys):
    s = await audited_day(nats_url, pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        zhao = await log.show(conn, log.Filters(actor="staff:zhao"))
        assert [r["type"] for r in zhao] == ["ResidentMovedOut", "ArrivalVerified"]
        r3 = await log.show(conn, log.Filters(resident="r3"))
        assert [r["type"] for r in r3] == ["ResidentRegistered", "ArrivalRegistered", "ArrivalVerified",
                                          "PassageDenied", "CaseOpened"]
        wanli = await log.show(conn, log.Filters(community=C2, type="PassageAllowed"))
        assert len(wanli) == 3 and {r["community"] for r in wanli} == {C2}
        street = await log.show(conn, log.Filters(community="changning.chengjiaqiao", limit=1000))
        city = await log.show(conn, log.Filters(limit=1000))
        assert len(street) == len(city) - 1  # all but the one Jing'an event
        evening = await log.show(conn, log.Filters(community=C, since=at(D, 17), until=at(D, 20)))
        assert [r["type"] for r in evening] == ["PassageAllowed"] * 3 + ["PassageDenied"]
        latest = await log.show(conn, log.Filters(community=C, since=at(D, 17), until=at(D, 20), limit=2,
                                                  newest_first=True))  # as the live board lists them
        assert [r["n"] for r in latest] == [r["n"] for r in evening[:-3:-1]]
    finally:
        await conn.close()
    capsys.readouterr()
    assert await run(["audit", "show", "--resident", "r3", "--since", D.isoformat(), "--format", "json"], pg_dsn) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["type"] for r in lines] == ["ArrivalRegistered", "ArrivalVerified", "PassageDenied", "CaseOpened"]
    assert lines[1]["envelope"]["data"]["outcome"] == "home_quarantine"
    assert await run(["audit", "show", "--actor", "staff:zhao"], pg_dsn) == 0
    assert capsys.readouterr().out.count("staff:zhao") == 2
    assert await run(["audit", "show", "--community", "changning..x"], pg_dsn) == 2
    await s.close()


async def test_the_audit_query_answers_staff_and_refuses_bad_input(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    await s.publish(ev(PassageAllowed, at(D, 9), passage="p1", direction="in", compound="nangong-1",
                       gate="g1", temperature_c=36.5, resident="r1"), actor="staff:guard")
    async with running(spec(), nats_url, pg_dsn):
        await wait_audited(pg_dsn, s.last_seq)
        reply = await query(s.nc, "audit", resident="r1")
        assert reply["ok"] and [r["actor"] for r in reply["rows"]] == ["staff:guard"]
        assert reply["rows"][0]["envelope"]["data"]["passage"] == "p1"
        for fields, field in (({"since": "2020-02-17"}, "since"), ({"limit": "5"}, "limit"), ({"who": 1}, "who")):
            bad = await query(s.nc, "audit", **fields)
            assert bad["error"]["code"] == "invalid" and bad["error"]["field"] == field, bad
        bad = await query(s.nc, "audit", community="a..b")
        assert bad["error"]["code"] == "invalid"
    await s.close()


async def run(argv: list[str], pg_dsn: str) -> int:
    parser = argparse.ArgumentParser(prog="cordon")
    audit_cli.add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(argv)
    return await asyncio.to_thread(args.run, args, Config(pg_dsn=pg_dsn))


async def test_nats_restarted_mid_stream_every_event_is_audited_once(nats_server, pg_dsn):
    async def passages(s: Stream, start: int, count: int) -> None:
        for i in range(start, start + count):
            await s.publish(ev(PassageAllowed, at(D, 9), passage=f"p{i}", direction="in", compound="nangong-1",
                               gate="g1", temperature_c=36.5, resident="r1"))

    async with running(spec(), nats_server.url, pg_dsn):
        s = await Stream.connect(nats_server.url)
        await passages(s, 0, 30)
        await wait_audited(pg_dsn, 30)
        await s.close()
        nats_server.kill()
        await nats_server.start()
        s = await Stream.connect(nats_server.url)
        await passages(s, 30, 30)
        await wait_audited(pg_dsn, 60, timeout=20)
        await s.close()
    verdict = await verify(pg_dsn)
    assert verdict.ok and verdict.rows == 60
