"""The audit log's hash chain and its verification: pure, no I/O.

Row ``n`` (1, 2, 3, … with no gap) holds one message of the stream: its stream sequence, subject and
exact bytes, plus columns read from those bytes so staff can search (actor, type, community,
resident, …). Its hash covers the previous row's hash, its own position and the bytes:

    hash_n = sha256(hash_{n-1} ‖ n ‖ stream_seq ‖ subject ‖ envelope bytes),   hash_0 = GENESIS

so an edited row breaks its own hash, a deleted row leaves a gap in ``n`` (or, renumbered, breaks
the next hash), and a swapped pair breaks the first of the two. The searchable columns are checked
against the bytes too: editing an actor column alone is caught. Anyone able to rewrite the whole
chain can forge it; compare the head hash with a copy kept elsewhere (``audit verify`` prints it).
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import NamedTuple

import msgspec

from shared import envelope as env

GENESIS = hashlib.sha256(b"cordon audit log").digest()


def link(prev: bytes, n: int, stream_seq: int, subject: str, envelope: bytes) -> bytes:
    h = hashlib.sha256(prev)
    h.update(n.to_bytes(8, "big"))
    h.update(stream_seq.to_bytes(8, "big"))
    h.update(subject.encode())
    h.update(b"\n")
    h.update(envelope)
    return h.digest()


class Columns(NamedTuple):
    """What the log shows and searches by, read from the event bytes (None where unreadable)."""

    event_id: str | None
    type: str | None
    community: str | None
    actor: str | None
    resident: str | None
    stream_id: str | None
    occurred_at: datetime | None


class _Probe(msgspec.Struct):
    resident: str | None = None


_probe = msgspec.json.Decoder(_Probe)
UNREADABLE = Columns(None, None, None, None, None, None, None)


def columns(envelope: bytes) -> Columns:
    """The searchable columns of one message. Never raises: an unreadable message is still logged."""
    try:
        raw = env.decode_raw(envelope)
        event_id = str(uuid.UUID(raw.event_id))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return UNREADABLE
    try:
        resident = _probe.decode(raw.data).resident
    except (msgspec.DecodeError, msgspec.ValidationError):
        resident = None
    return Columns(event_id, raw.type, raw.community, raw.actor, resident, raw.stream_id, raw.occurred_at)


class Row(NamedTuple):
    n: int
    stream_seq: int
    subject: str
    envelope: bytes
    hash: bytes
    columns: Columns


class Finding(NamedTuple):
    """The first row that does not match, and why (``problem`` is a stable code)."""

    n: int
    problem: str  # missing | hash_mismatch | column_mismatch | out_of_order | tail_missing
    detail: str


class Verifier:
    """Walks rows in order of ``n``; :meth:`check` returns the first finding, then keeps it."""

    def __init__(self, rewinds: dict[int, int] | None = None) -> None:
        #: row n -> the stream's last sequence when the log rewound before row n (audit.rewinds)
        self.rewinds = rewinds or {}
        self.prev = GENESIS
        self.expect = 1
        self.last_seq = 0
        self.rows = 0
        self.finding: Finding | None = None

    def check(self, row: Row) -> Finding | None:
        if self.finding is None:
            self.finding = self._check(row)
            self.rows += 1
        return self.finding

    def _check(self, row: Row) -> Finding | None:
        if row.n != self.expect:
            return Finding(self.expect, "missing",
                           f"row {self.expect} is missing: row {row.n} follows row {self.expect - 1}")
        if link(self.prev, row.n, row.stream_seq, row.subject, row.envelope) != row.hash:
            return Finding(row.n, "hash_mismatch",
                           f"row {row.n} does not match its hash: its bytes were changed, or rows were "
                           "reordered or removed before it")
        expected = columns(row.envelope)
        if row.columns != expected:
            wrong = [f for f in Columns._fields if getattr(row.columns, f) != getattr(expected, f)]
            return Finding(row.n, "column_mismatch",
                           f"row {row.n}: {', '.join(wrong)} differ from the event bytes")
        after = self.rewinds.get(row.n, self.last_seq)  # the stream lost its tail: sequences again
        if row.stream_seq <= after:
            return Finding(row.n, "out_of_order",
                           f"row {row.n} has stream sequence {row.stream_seq} after {after}")
        self.prev, self.expect, self.last_seq = row.hash, row.n + 1, row.stream_seq
        return None

    def finish(self, head_n: int, head_hash: bytes) -> Finding | None:
        """After the last row: the head (rows appended, last hash) must agree with what was walked."""
        if self.finding is None and (head_n, head_hash) != (self.expect - 1, self.prev):
            if head_n >= self.expect:
                self.finding = Finding(self.expect, "tail_missing",
                                       f"the log ends at row {self.expect - 1} but {head_n} were appended")
            else:
                self.finding = Finding(head_n, "head_mismatch",
                                       f"the head records row {head_n} and another hash than the log")
        return self.finding
