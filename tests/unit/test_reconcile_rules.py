"""What `cordon reconcile` counts as a difference between a service's record and the stream."""
from services.ops.reconcile import _compare, _Head


def head(event_id: str, stream: str = "case:c-1", version: int = 1) -> _Head:
    return _Head(event_id=event_id, stream_id=stream, stream_version=version)


RECORDED = {"e1": ("case:c-1", 1), "e2": ("case:c-1", 2), "e3": ("case:c-2", 1)}


def differences(mine, pending=()):
    found: list[str] = []
    _compare("quarantine", RECORDED, set(pending), mine, found)
    return found


def test_a_stream_that_holds_the_record_in_order_has_no_difference():
    assert differences([(1, head("e1")), (2, head("e3", "case:c-2")), (3, head("e2", version=2))]) == []


def test_an_event_still_in_the_outbox_is_pending_not_missing():
    assert differences([(1, head("e1")), (2, head("e3", "case:c-2"))], pending={"e2"}) == []


def test_a_missing_event_a_foreign_one_a_copy_and_a_reordered_stream_are_each_named():
    found = differences([(1, head("e2", version=2)), (2, head("e1")), (3, head("e1")), (4, head("x9"))])
    assert any("e3 (case:c-2 v1) is recorded but not on the stream" in d for d in found)
    assert any("sequence 4 (x9) is not in the record" in d for d in found)
    assert any("e1 is on the stream 2 times" in d for d in found)
    assert any("case:c-1 v1 (sequence 2) comes after v2" in d for d in found)
    assert len(found) == 4


def test_an_event_on_the_stream_after_the_record_was_read_is_not_foreign():
    # Given the record read when the stream ended at sequence 3, then a new event recorded and published
    found: list[str] = []
    mine = [(1, head("e1")), (2, head("e3", "case:c-2")), (3, head("e2", version=2)), (4, head("e4", "case:c-3"))]
    _compare("quarantine", RECORDED, set(), mine, found, known=3)
    # Then it is no difference; one the stream held before the record was read would be
    assert found == []
    _compare("quarantine", RECORDED, set(), mine, found, known=4)
    assert found == ["quarantine: stream sequence 4 (e4) is not in the record"]
