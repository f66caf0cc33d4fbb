"""Does the committee's board show what the scenario did? Read the board (``cordon.qry.community``)
until its figures equal the book's, or a timeout; the views are built from the event stream, so
they catch up a moment after the commands were accepted.

The demo's communities may already hold figures (another seed played on the same Cordon): the
board is read before the day starts and the book's figures are added to that baseline. Playing the
same seed again replays the stored replies and changes nothing: then the board must still show
the baseline.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date

from services.demo.book import Book, differences
from services.demo.client import Api, qry


@dataclass
class Checked:
    community: str
    board: dict
    expected: dict[str, int]
    diffs: dict[str, tuple[int, int]]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.diffs


async def board(api: Api, community: str, on: date) -> dict:
    """The committee's board on ``on``; ``{}`` for a community with no events yet."""
    reply = await api.send(qry("community", community=community, on=on.isoformat()))
    if reply.get("ok"):
        return reply
    if (reply.get("error") or {}).get("code") == "not_found":
        return {}
    raise RuntimeError(f"community {community}: {reply.get('error')}")


async def baseline(api: Api, communities: list[str], on: date) -> dict[str, dict[str, int]]:
    return {c: (await board(api, c, on)).get("figures", {}) for c in communities}


async def played_before(api: Api, resident: str) -> bool:
    """True if the views already know the seed's first resident: this seed was played here."""
    reply = await api.send(qry("timeline", resident=resident, limit=1))
    return bool(reply.get("ok"))


def expected(book: Book, community: str, on: date, base: dict[str, int], replayed: bool) -> dict[str, int]:
    if replayed:
        return dict(base)
    out = dict(base)
    for key, n in book.figures(community, on).items():
        out[key] = out.get(key, 0) + n
    return out


async def check(api: Api, book: Book, on: date, base: dict[str, dict[str, int]], replayed: bool,
                timeout: float = 60.0) -> list[Checked]:
    out = []
    for community in sorted(base):
        want = expected(book, community, on, base[community], replayed)
        started = time.monotonic()
        while True:
            shown = await board(api, community, on)
            diffs = differences(want, shown.get("figures", {}))
            if not diffs or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.2)
        out.append(Checked(community, shown, want, diffs, time.monotonic() - started))
    return out
