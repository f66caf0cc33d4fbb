"""One import run: the file's rows sent as individual commands through the public API, many in
flight, the replies counted and the refused rows reported.

Command ids are the file's digest and the row's line (:func:`services.imports.rows.digest`): the
same file again sends the same commands, which the services answer from their stored replies and
write nothing for; a row refused before is decided again (refusals are not kept), so a file
corrected and sent again imports what it fixed.
"""
from __future__ import annotations

from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import TextIO

from services.demo.client import Api, Call
from services.imports import report, rows
from services.imports.report import Progress, Summary
from services.imports.rows import Row, RowError


class Importer:
    """Sends one file's commands as ``actor`` in ``community`` on ``api``, drawing progress on ``err``."""

    def __init__(self, api: Api, community: str, actor: str, err: TextIO):
        self.api, self.community, self.actor, self.err = api, community, actor, err

    def call(self, command: str, command_id: str, fields: dict) -> Call:
        """A registry command on the community's scoped subject (the one staff may publish on)."""
        body = {**fields, "command_id": command_id, "actor": self.actor}
        return Call("cmd", "registry", f"{command}.{self.community}", body)

    async def send(self, calls: list[Call], progress: Progress, summary: Summary) -> list[dict]:
        """Every call, ``api.in_flight`` at a time; the progress counts the rows refused already."""
        done = failed = len(summary.errors)

        def seen(call: Call, reply: dict, _latency: float) -> None:
            nonlocal done, failed
            done, failed = done + 1, failed + (not reply.get("ok"))
            progress.update(done, failed)

        return await self.api.many(calls, on_reply=seen)

    def count(self, summary: Summary, line: int, reply: dict, started: datetime) -> None:
        result = report.outcome(reply, started)
        summary.counts[result] += 1
        if result == "refused":
            summary.errors.append(report.refusal(line, reply))

    async def arrivals(self, data: bytes) -> Summary:
        """Each row a ``register_pending_arrival``: the resident's arrival, or a pending registration."""
        digest, summary = rows.digest(data), Summary()
        parsed = [rows.arrival(line, values)
                  for line, values in rows.records(data, rows.ARRIVAL_REQUIRED, rows.ARRIVAL_OPTIONAL)]
        good = [r for r in parsed if isinstance(r, Row)]
        summary.rows, summary.errors = len(parsed), [r for r in parsed if isinstance(r, RowError)]
        calls = [self.call("register_pending_arrival", f"import-arrivals-{digest}-{r.line}",
                           {**r.fields, "community": self.community}) for r in good]
        started, progress = datetime.now(timezone.utc), Progress("arrivals", len(parsed), self.err)
        replies = await self.send(calls, progress, summary)
        for row, reply in zip(good, replies):
            self.count(summary, row.line, reply, started)
        progress.update(len(parsed), len(summary.errors), final=True)
        summary.seconds = progress.elapsed
        return summary

    async def residents(self, data: bytes) -> Summary:
        """A household book: each household (compound, building, address) a ``register_household``,
        then each of its rows a ``register_resident``; the rows of a refused household are refused
        with it."""
        digest, summary = rows.digest(data), Summary()
        parsed = [rows.resident(line, values)
                  for line, values in rows.records(data, rows.RESIDENT_REQUIRED, rows.RESIDENT_OPTIONAL)]
        good = [r for r in parsed if isinstance(r, Row)]
        summary.rows, summary.errors = len(parsed), [r for r in parsed if isinstance(r, RowError)]
        homes: dict[tuple, list[Row]] = {}
        for row in good:
            homes.setdefault(row.fields["home"], []).append(row)
        started, progress = datetime.now(timezone.utc), Progress("residents", len(parsed), self.err)
        households = {home: household_id(digest, members[0].line) for home, members in homes.items()}
        replies = await self.api.many([self.call(
            "register_household", f"import-households-{digest}-{members[0].line}",
            {"community": self.community, "compound": home[0], "building": home[1], "address": home[2],
             "household": households[home]}) for home, members in homes.items()])
        placed = []
        for (home, members), reply in zip(homes.items(), replies):
            if reply.get("ok"):
                placed += members
                continue
            refused = report.refusal(members[0].line, reply)
            summary.counts["refused"] += len(members)
            summary.errors += [RowError(m.line, refused.field, f"household refused: {refused.reason}") for m in members]
        calls = [self.call("register_resident", f"import-residents-{digest}-{r.line}",
                           {**{k: v for k, v in r.fields.items() if k != "home"},
                            "household": households[r.fields["home"]]}) for r in placed]
        replies = await self.send(calls, progress, summary)
        for row, reply in zip(placed, replies):
            self.count(summary, row.line, reply, started)
        progress.update(len(parsed), len(summary.errors), final=True)
        summary.seconds = progress.elapsed
        return summary


def household_id(digest: str, line: int) -> str:
    """A household's id in Cordon, from the file and the line of its first resident (nothing of
    the address: ids travel on the bus)."""
    return "hh-" + sha256(f"{digest}:{line}".encode()).hexdigest()[:20]


async def run(api: Api, kind: str, source: Path, community: str, actor: str, err: TextIO) -> tuple[Summary, Path]:
    """Import ``source``; the summary and the error report written beside it."""
    data = source.read_bytes()
    importer = Importer(api, community, actor, err)
    summary = await (importer.arrivals(data) if kind == "arrivals" else importer.residents(data))
    path = report.errors_path(source)
    report.write_errors(path, summary.errors)
    return summary, path
