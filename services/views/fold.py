"""Folding a batch of ops into figure deltas and the new state of the things they touch: pure.

The projector loads the stored state of every thing a batch's Put/Drop ops name, folds the batch
here in stream order, and writes back what :func:`fold` returns, in the same transaction.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, NamedTuple

from services.views.rules import Delta, Op, Put


class Member(NamedTuple):
    """What a thing counts towards now: ``value`` on ``metric`` of ``community``."""

    community: str
    metric: str
    value: int


Key = tuple[str, str]  # (set, key)
FigureKey = tuple[str, str, date]  # (community, metric, day)


@dataclass
class Folded:
    deltas: dict[FigureKey, int] = field(default_factory=dict)
    #: Things to insert or update, and things to delete.
    upserts: dict[Key, Member] = field(default_factory=dict)
    drops: set[Key] = field(default_factory=set)


def member_keys(batch: Iterable[tuple[str, date, tuple[Op, ...]]]) -> set[Key]:
    """Every (set, key) a batch's Put and Drop ops name: what to load before :func:`fold`."""
    return {(op.set, op.key) for _, _, ops in batch for op in ops if not isinstance(op, Delta)}


def fold(batch: Iterable[tuple[str, date, tuple[Op, ...]]], members: dict[Key, Member]) -> Folded:
    """Apply ``(community, day, ops)`` items in order to ``members`` (the stored states of the
    things they name; absent means it counts nowhere). ``members`` is not modified."""
    deltas: dict[FigureKey, int] = defaultdict(int)
    state = dict(members)
    touched: set[Key] = set()
    for community, day, item_ops in batch:
        for op in item_ops:
            if isinstance(op, Delta):
                deltas[(community, op.metric, op.day)] += op.n
                continue
            key = (op.set, op.key)
            old = state.pop(key, None)
            if old is not None:
                deltas[(old.community, old.metric, day)] -= old.value
            if isinstance(op, Put):
                state[key] = Member(community, op.metric, op.value)
                deltas[(community, op.metric, day)] += op.value
            touched.add(key)
    out = Folded(deltas={k: n for k, n in deltas.items() if n})
    for key in touched:
        if key in state:
            if state[key] != members.get(key):
                out.upserts[key] = state[key]
        elif key in members:
            out.drops.add(key)
    return out
