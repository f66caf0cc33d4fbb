"""The command runtime refuses, on real PostgreSQL, a command whose events fall outside its
caller's jurisdiction: forbidden, nothing of it written (events, rows, stored reply), the batch's
other commands unaffected, and its command_id still free for someone entitled.

The caller's identity arrives as the ``Nats-Request-Info`` header the server stamps on requests
from the CITY account (tests/support/identities.py); NATS-side refusals are tested elsewhere."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.envelope import Event, event_type
from shared.errors import CommandError
from shared.identity import Identity
from shared.runtime import CommandSpec
from shared.service import ServiceSpec
from shared.wire import BaseCommand
from tests.support.cordon import running
from tests.support.bus import connect
from tests.support.identities import As, BEIXIN, NANGONG, forbidden

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)


@event_type("registry")  # only to have a subject; the probe's schema is its own
class ProbePlaced(Event, frozen=True, kw_only=True):
    note: int


class Place(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Record a note on ``stream`` in community ``where`` (no community field: the target decides)."""

    stream: str
    where: str
    note: int


async def place(cmd: Place, ctx) -> None:
    _, version = await ctx.expect(f"probe:{cmd.stream}")
    ctx.append(f"probe:{cmd.stream}", version, [ProbePlaced(community=cmd.where, note=cmd.note)])
    ctx.write("INSERT INTO probe.notes VALUES ($1)", cmd.note)


async def place_anyway(cmd: Place, ctx) -> None:
    """A handler that swallows the refusal of append and writes its row anyway (as a bulk handler
    skipping one item's refusal might)."""
    try:
        await place(cmd, ctx)
    except CommandError:
        ctx.write("INSERT INTO probe.notes VALUES ($1)", cmd.note)


def probe_spec() -> ServiceSpec:
    return ServiceSpec(
        name="probe", commands=CommandSpec(types={"place": Place, "place_anyway": Place},
                                           handlers={"place": place, "place_anyway": place_anyway},
                                           evolve=lambda state, event: event.note),
        extra_ddl="CREATE TABLE IF NOT EXISTS probe.notes (note integer)",
    )


async def counts(pg_dsn: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return tuple([await conn.fetchval(f"SELECT count(*) FROM probe.{t}") for t in ("events", "commands", "notes")])
    finally:
        await conn.close()


async def test_a_command_acting_in_another_community_is_refused_alone_in_its_batch(nats_url, pg_dsn):
    async with running(probe_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        staff = As(nc, LI_WEI)
        # Given 40 commands of Nangong's staff arriving together, every fifth acting in Beixin
        replies = await asyncio.gather(*[
            staff.command("probe", "place", NANGONG, command_id=f"p-{i}", stream=f"s{i}",
                          where=BEIXIN if i % 5 == 0 else NANGONG, note=i) for i in range(40)])
        # Then those are forbidden, naming the community, and the others are accepted
        for i, reply in enumerate(replies):
            if i % 5 == 0:
                forbidden(reply, BEIXIN)
            else:
                assert reply["ok"], reply
        # And nothing of the refused ones is written: no event, no row, no stored reply
        assert await counts(pg_dsn) == (32, 32, 32)
        # When someone entitled sends the same command_id later, it is a new command, accepted
        beixin_staff = As(nc, Identity(name="zhao-lei", role="staff", scope=BEIXIN))
        again = await beixin_staff.command("probe", "place", BEIXIN, command_id="p-0", stream="s0",
                                           where=BEIXIN, note=0)
        assert again["ok"] and again["events"][0]["actor"] == "staff:zhao-lei", again
        assert await counts(pg_dsn) == (33, 33, 33)
        await nc.close()


async def test_a_handler_that_swallows_the_refusal_still_gets_nothing_in(nats_url, pg_dsn):
    async with running(probe_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        reply = await As(nc, LI_WEI).command("probe", "place_anyway", NANGONG, stream="s1", where=BEIXIN, note=1)
        forbidden(reply, BEIXIN)
        assert await counts(pg_dsn) == (0, 0, 0)
        # The service still serves: the same staff's command in its own community is accepted
        assert (await As(nc, LI_WEI).command("probe", "place", NANGONG, stream="s2", where=NANGONG, note=2))["ok"]
        await nc.close()


async def test_from_inside_cordon_a_scoped_subject_still_binds_the_events_to_its_community(nats_url, pg_dsn):
    async with running(probe_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        operator = As(nc, None)
        forbidden(await operator.command("probe", "place", NANGONG, stream="s1", where=BEIXIN, note=1), "subject")
        assert (await operator.command("probe", "place", None, stream="s1", where=BEIXIN, note=1))["ok"]
        assert await counts(pg_dsn) == (1, 1, 1)
        await nc.close()
