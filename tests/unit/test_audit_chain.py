"""The audit hash chain, pure: a good log verifies; every kind of tampering is named at its row."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from services.audit import chain

C = "changning.chengjiaqiao.nangong"


def message(i: int, resident: str | None = "r1", actor: str = "staff:li-wei") -> bytes:
    data = {"community": C, "passage": f"p{i}"}
    if resident:
        data["resident"] = resident
    return json.dumps({
        "event_id": str(uuid.UUID(int=i + 1)), "type": "PassageAllowed", "schema": 1,
        "stream_id": f"passage:p{i}", "stream_version": 1, "community": C,
        "occurred_at": f"2020-02-17T08:{i % 60:02d}:00+08:00", "recorded_at": "2020-02-17T08:00:00+08:00",
        "actor": actor, "correlation_id": "c", "data": data}).encode()


def log(count: int, seqs: list[int] | None = None) -> list[chain.Row]:
    rows, prev = [], chain.GENESIS
    for n in range(1, count + 1):
        seq, subject, body = seqs[n - 1] if seqs else n * 2, f"cordon.evt.{C}.checkpoint.PassageAllowed", message(n)
        prev = chain.link(prev, n, seq, subject, body)
        rows.append(chain.Row(n, seq, subject, body, prev, chain.columns(body)))
    return rows


def verify(rows: list[chain.Row], head: tuple[int, bytes] | None = None,
           rewinds: dict[int, int] | None = None) -> chain.Finding | None:
    verifier = chain.Verifier(rewinds)
    for row in rows:
        if verifier.check(row):
            break
    if head is None:
        head = (rows[-1].n, rows[-1].hash) if rows else (0, chain.GENESIS)
    return verifier.finish(*head)


def test_an_untouched_log_verifies():
    assert verify(log(50)) is None


def test_an_empty_log_verifies():
    assert verify([]) is None


def test_an_edited_row_is_named():
    rows = log(10)
    rows[4] = rows[4]._replace(envelope=rows[4].envelope.replace(b"staff:li-wei", b"staff:nobody"))
    finding = verify(rows)
    assert (finding.n, finding.problem) == (5, "hash_mismatch")


def test_an_edited_row_with_its_hash_recomputed_is_caught_at_the_next_row():
    rows = log(10)
    body = rows[4].envelope.replace(b"staff:li-wei", b"staff:nobody")
    forged = chain.link(rows[3].hash, 5, rows[4].stream_seq, rows[4].subject, body)
    rows[4] = rows[4]._replace(envelope=body, hash=forged, columns=chain.columns(body))
    finding = verify(rows)
    assert (finding.n, finding.problem) == (6, "hash_mismatch")


def test_a_deleted_row_is_named_as_missing():
    rows = log(10)
    del rows[6]
    finding = verify(rows)
    assert (finding.n, finding.problem) == (7, "missing")


def test_a_deleted_row_with_the_rest_renumbered_is_caught_where_it_was():
    rows = log(10)
    del rows[6]
    rows = [r._replace(n=i + 1) for i, r in enumerate(rows)]
    assert verify(rows).n == 7


def test_a_swapped_pair_is_caught_at_the_first_of_the_two():
    rows = log(10)
    a, b = rows[2], rows[3]
    rows[2], rows[3] = b._replace(n=3), a._replace(n=4)
    finding = verify(rows)
    assert (finding.n, finding.problem) == (3, "hash_mismatch")


def test_swapped_contents_under_the_same_hashes_are_caught_at_the_first_of_the_two():
    rows = log(10)
    a, b = rows[2], rows[3]
    rows[2] = a._replace(envelope=b.envelope, columns=b.columns)
    rows[3] = b._replace(envelope=a.envelope, columns=a.columns)
    assert verify(rows).n == 3


def test_the_last_rows_deleted_are_caught_against_the_head():
    rows = log(10)
    head = (rows[-1].n, rows[-1].hash)
    finding = verify(rows[:8], head=head)
    assert (finding.n, finding.problem) == (9, "tail_missing")


def test_a_search_column_edited_alone_is_caught():
    rows = log(10)
    rows[1] = rows[1]._replace(columns=rows[1].columns._replace(actor="staff:someone-else"))
    finding = verify(rows)
    assert (finding.n, finding.problem) == (2, "column_mismatch") and "actor" in finding.detail


def test_a_changed_stream_sequence_breaks_the_hash():
    rows = log(5)
    rows[2] = rows[2]._replace(stream_seq=999)
    assert verify(rows).n == 3


def test_stream_sequences_go_back_only_where_a_rewind_is_recorded():
    # The stream lost its tail after sequence 8 (the log had reached 10): row 6 comes at 9 again
    rows = log(8, seqs=[2, 4, 6, 8, 10, 9, 11, 12])
    finding = verify(rows)
    assert (finding.n, finding.problem) == (6, "out_of_order")
    assert verify(rows, rewinds={6: 8}) is None
    assert verify(log(8, seqs=[2, 4, 6, 8, 10, 8, 11, 12]), rewinds={6: 8}).problem == "out_of_order"
    assert verify(rows, rewinds={7: 8}).n == 6  # recorded at another row: still out of order


def test_the_first_finding_is_kept():
    rows = log(10)
    rows[1] = rows[1]._replace(hash=b"x" * 32)
    rows[7] = rows[7]._replace(hash=b"y" * 32)
    verifier = chain.Verifier()
    findings = {verifier.check(r) for r in rows}
    assert {f.n for f in findings if f} == {2}


def test_columns_are_read_from_the_bytes():
    cols = chain.columns(message(3, resident="r9", actor="staff:zhao"))
    assert (cols.type, cols.community, cols.actor, cols.resident, cols.stream_id) == (
        "PassageAllowed", C, "staff:zhao", "r9", "passage:p3")
    assert cols.occurred_at == datetime(2020, 2, 17, 0, 3, tzinfo=timezone.utc)


@pytest.mark.parametrize("body", [b"garbage", b"{}", message(1).replace(b'"event_id": "', b'"event_id": "nope')])
def test_an_unreadable_message_has_empty_columns_but_is_still_chained(body):
    assert chain.columns(body) == chain.UNREADABLE
    assert len(chain.link(chain.GENESIS, 1, 1, "s", body)) == 32


def test_the_hash_covers_position_sequence_subject_and_bytes():
    base = chain.link(chain.GENESIS, 1, 1, "s", b"x")
    assert len({base, chain.link(chain.GENESIS, 2, 1, "s", b"x"), chain.link(chain.GENESIS, 1, 2, "s", b"x"),
                chain.link(chain.GENESIS, 1, 1, "t", b"x"), chain.link(chain.GENESIS, 1, 1, "s", b"y"),
                chain.link(b"\0" * 32, 1, 1, "s", b"x")}) == 6
