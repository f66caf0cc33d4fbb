"""`cordon demo`: a day in a real street, played through the public message API, ending with the
committee's board, the street's daily report, and a check that the board shows what was done.

Uses only NATS requests on ``cordon.cmd.*`` / ``cordon.qry.*`` / ``cordon.sys.health`` (see
:mod:`services.demo.client`); :mod:`services.demo.system` starts a Cordon when none is given.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from services.demo import check, plan as planning, street as streets, system, tables
from services.demo.client import Api, qry
from services.demo.day import Demo, Played, Progress


@dataclass
class Result:
    played: Played
    checks: list[check.Checked] = field(default_factory=list)
    replayed: bool = False
    seconds: float = 0.0
    text: str = ""

    @property
    def ok(self) -> bool:
        return (all(c.ok for c in self.checks) and not self.played.unintended
                and (self.replayed or not self.played.notes))


def names(street: streets.Street) -> dict[str, str]:
    return {street.community(c.slug): c.name for c in streets.PLAN}


async def play(url: str, creds: str | None = None, *, seed: int = 7, scale: float = 1.0, in_flight: int = 128, err: TextIO | None = None,
               quiet: bool = False, check_timeout: float = 60.0) -> Result:
    """Play the day on the Cordon at ``url`` (connecting with ``creds``); the result holds the
    checks and the printed tables."""
    street = streets.build(seed, scale)
    day = planning.plan_day(street)
    api = await Api.connect(url, creds, in_flight=in_flight)
    try:
        communities = sorted(names(street))
        base = await check.baseline(api, communities, planning.DAY)
        replayed = await check.played_before(api, street.residents[0].id)
        demo = Demo(api, street, day, Progress(err, quiet))
        played = await demo.play()
        checks = await check.check(api, demo.book, planning.DAY, base, replayed, timeout=check_timeout)
        text = await render(api, street, played, checks, replayed)
        return Result(played, checks, replayed, played.seconds, text)
    finally:
        await api.close()


async def render(api: Api, street: streets.Street, played: Played, checks: list[check.Checked],
                 replayed: bool) -> str:
    committee = names(street)
    on = planning.DAY.isoformat()
    rollup = await api.send(qry("rollup", scope=streets.STREET, on=on, detail=True))
    first = checks[0] if checks else None
    lines = [summary(played, street)]
    if first and first.board:
        lines += ["", tables.board(first.board, f"{committee[first.community]} ({first.community})")]
    if rollup.get("ok"):
        lines += ["", tables.report(rollup, committee)]
    else:
        lines += ["", f"daily report: {rollup.get('error')}"]
    lines += ["", await shifts(api, sorted(committee), on), ""]
    lines += verdict(played, checks, replayed)
    return "\n".join(lines)


def summary(played: Played, street: streets.Street) -> str:
    accepted = sum(played.accepted.values())
    rate = played.commands / played.seconds if played.seconds else 0.0
    return (f"played {played.commands:,} commands in {played.seconds:.1f} s ({rate:,.0f}/s, of which "
            f"{played.settle_seconds:.1f} s waiting for the services to catch up); {accepted:,} accepted; "
            f"{len(street.households):,} households, {len(street.residents):,} residents")


async def shifts(api: Api, communities: list[str], on: str) -> str:
    parts = []
    for community in communities:
        reply = await api.send(qry("checkpoint.shifts", community=community, on=on))
        if reply.get("ok"):
            committee = community.rsplit(".", 1)[1]
            parts.append(f"{committee} {reply['person_times']} person-times, {reply['hours']:g} hours")
    return "volunteers on gate duty: " + "; ".join(parts)


def verdict(played: Played, checks: list[check.Checked], replayed: bool) -> list[str]:
    out = []
    total = sum(played.decisions.values())
    intended = total - sum(1 for _ in played.unintended)
    out.append(f"gate decisions as planned: {intended:,} of {total:,}")
    for note in played.notes:
        out.append(f"note: {note}")
    what = "the same as before (this seed was played here already: replies replayed)" if replayed else \
        "exactly what the scenario did"
    for c in checks:
        if c.ok:
            out.append(f"board check {c.community}: all {len(c.expected)} figures show {what}")
        else:
            shown = ", ".join(f"{k} expected {a} shown {b}" for k, (a, b) in c.diffs.items())
            out.append(f"board check {c.community}: MISMATCH after {c.seconds:.0f} s: {shown}")
    return out


async def main(nats_url: str | None, pg_dsn: str | None, data_dir: Path | None, *, seed: int, scale: float,
               in_flight: int, out: TextIO | None = None, err: TextIO | None = None,
               creds: str | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    started = time.perf_counter()
    note = lambda line: print(f"cordon demo: {line}", file=err, flush=True)  # noqa: E731
    async with system.cordon(nats_url, pg_dsn, data_dir, note, creds) as (url, client_creds):
        result = await play(url, client_creds, seed=seed, scale=scale, in_flight=in_flight, err=err)
    print(result.text, file=out, flush=True)
    note(f"done in {time.perf_counter() - started:.0f} s")
    return 0 if result.ok else 1
