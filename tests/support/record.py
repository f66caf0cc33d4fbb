"""An in-memory event store for the property tests of the pure domains (no tests here).

It does with a decision's events what the runtime does with them, without PostgreSQL: each event is
put in its envelope and encoded as the ``events`` table stores it, the stream's state is carried
forward with ``evolve`` as a batch does (``Context.append``), and the state a later command's handler
would load is the stream read back from the encoded rows and folded from ``None``
(``Context.load``). :meth:`Record.check_replay` says the two agree: the state a decision was made
against is the state a handler gets by replaying the stream.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from shared import envelope as env

#: Every row's recorded_at; a fixed instant, so the encoded rows depend on the example alone.
RECORDED_AT = datetime(2030, 1, 1, tzinfo=timezone.utc)


class Record:
    """Streams of encoded events and the state each stream was carried to."""

    def __init__(self, evolve: Callable[[Any, Any], Any]):
        self.evolve = evolve
        self.rows: dict[str, list[bytes]] = {}
        self.states: dict[str, Any] = {}
        #: (stream, event) in the order they were appended, across streams.
        self.log: list[tuple[str, Any]] = []

    def state(self, stream: str) -> Any:
        """The stream's state as the running batch carries it (None for an empty stream)."""
        return self.states.get(stream)

    def version(self, stream: str) -> int:
        return len(self.rows.get(stream, ()))

    def append(self, stream: str, events: Iterable[Any], *, at: datetime, actor: str) -> None:
        """Store ``events`` at the end of ``stream`` and carry its state forward."""
        rows, state = self.rows.setdefault(stream, []), self.states.get(stream)
        for event in events:
            envelope = env.wrap(event, stream_id=stream, stream_version=len(rows) + 1, occurred_at=at,
                                actor=actor, correlation_id="c", recorded_at=RECORDED_AT,
                                event_id=f"{stream}/{len(rows) + 1}")
            rows.append(env.encode(envelope))
            state = self.evolve(state, event)
            self.log.append((stream, event))
        self.states[stream] = state

    def events(self, stream: str) -> list[Any]:
        """The stream's events as a handler reads them back from the table."""
        return [env.decode(row)[1] for row in self.rows.get(stream, ())]

    def replayed(self, stream: str) -> Any:
        """The stream's state as a handler loads it: its stored events folded from None."""
        state = None
        for event in self.events(stream):
            state = self.evolve(state, event)
        return state

    def check_replay(self, streams: Iterable[str] | None = None) -> None:
        """Replaying each stream (every stream when None) gives the state the decisions saw."""
        for stream in self.rows if streams is None else streams:
            replayed, carried = self.replayed(stream), self.states.get(stream)
            assert replayed == carried, (
                f"{stream}: replaying its {self.version(stream)} events gives\n  {replayed!r}\n"
                f"but the decisions were made against\n  {carried!r}")


# -- settings and strategies the property tests share ----------------------------------------------

#: Every phase but ``explain``: on Python 3.11 it traces every line of every shrunk example, and a
#: failing machine then took minutes (past the suite's timeout) to report its minimal example.
QUICK_PHASES = tuple(p for p in Phase if p is not Phase.explain)
#: The settings of every state machine but its number of examples: runs of up to 40 commands, no
#: deadline (a run is many commands), one failure reported (shrinking one is quicker than several).
MACHINE = dict(stateful_step_count=40, deadline=None, report_multiple_bugs=False, phases=QUICK_PHASES,
               suppress_health_check=[HealthCheck.too_slow])


def _moment(n: int) -> tuple[timedelta, timedelta]:
    a, b = n % 1000, n // 1000
    advance = timedelta(days=1 + a % 9) if a >= 900 else timedelta(minutes=a % 240)
    late = timedelta(hours=b % 48) if b % 8 == 1 else timedelta(0)
    return advance, late


#: (advance, late) before a command: mostly minutes to hours forward, one time in ten a jump of days;
#: one command in eight recorded up to two days late (``occurred_at`` in the past, as the runtime
#: accepts it). One integer, so a failing example shrinks to "no time passes".
moments = st.integers(0, 2**16 - 1).map(_moment)


def mostly(common: list, rare: list, one_in: int = 10):
    """One of ``common`` most of the time, one of ``rare`` one time in ``one_in`` (one draw)."""
    return st.integers(0, 10 * one_in - 1).map(
        lambda n: rare[n % len(rare)] if n >= 10 * (one_in - 1) else common[n % len(common)])
