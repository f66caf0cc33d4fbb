"""The tail's bookkeeping of one pull consumer: credit, order, liveness. Pure (messages built here)."""
from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from shared.tail import HEARTBEAT, Broken, _Flow, sequences


def message(stream_seq: int, consumer_seq: int, pending: int = 0, data: bytes = b"{}") -> Msg:
    reply = f"$JS.ACK.CORDON.tail1.1.{stream_seq}.{consumer_seq}.1700000000000000000.{pending}"
    return Msg(_client=None, subject="cordon.evt.a.b.c.registry.X", reply=reply, data=data)


def status(code: str, description: str = "", **headers) -> Msg:
    return Msg(_client=None, subject="_INBOX.x", data=b"",
               headers={"Status": code, "Description": description, **headers})


def test_sequences_are_read_from_the_reply_subject():
    assert sequences(message(41, 7, pending=3)) == (41, 7, 3)


def test_messages_in_order_are_buffered_with_their_sequences_and_use_up_credit():
    flow, buffer = _Flow(0.0), []
    flow.credit = 10
    for i, seq in enumerate((5, 6, 9), 1):  # stream sequences may skip (deleted messages)
        flow.receive(message(seq, i, pending=3 - i), buffer, 1.0)
    assert [(s, p) for s, p, _ in buffer] == [(5, 2), (6, 1), (9, 0)]
    assert flow.credit == 7
    flow.check(1.0)


def test_a_gap_in_delivery_breaks_the_flow():
    flow, buffer = _Flow(0.0), []
    flow.receive(message(1, 1), buffer, 0.0)
    flow.receive(message(3, 3), buffer, 0.0)  # delivery 2 was lost
    assert len(buffer) == 1
    with pytest.raises(Broken, match="delivery 3 after 1"):
        flow.check(0.0)


def test_an_expired_pull_gives_back_the_credit_it_did_not_use():
    flow, buffer = _Flow(0.0), []
    flow.credit = 2000
    flow.receive(message(1, 1), buffer, 0.0)
    flow.receive(status("408", "Request Timeout", **{"Nats-Pending-Messages": "1999"}), buffer, 0.0)
    assert flow.credit == 0 and len(buffer) == 1
    flow.check(0.0)


def test_a_heartbeat_is_life_not_a_message():
    flow, buffer = _Flow(0.0), []
    flow.credit = 5
    flow.receive(status("100", "Idle Heartbeat"), buffer, 10.0)
    assert buffer == [] and flow.credit == 5
    flow.check(10.0 + 2 * HEARTBEAT)


def test_silence_while_waiting_for_messages_breaks_the_flow():
    flow = _Flow(0.0)
    flow.credit = 5
    with pytest.raises(Broken, match="no heartbeat"):
        flow.check(3 * HEARTBEAT + 0.1)


def test_silence_with_nothing_asked_for_is_fine():
    _Flow(0.0).check(100.0)


@pytest.mark.parametrize("code, description", [("409", "Consumer Deleted"), ("404", "No Messages"),
                                               ("503", "No Responders")])
def test_any_other_status_ends_this_consumer(code, description):
    flow = _Flow(0.0)
    flow.receive(status(code, description), [], 0.0)
    with pytest.raises(Broken, match=code):
        flow.check(0.0)


def test_a_reconnect_ends_this_consumer():
    flow = _Flow(0.0, reconnects=2)
    flow.check(0.0, reconnects=2)
    with pytest.raises(Broken, match="reconnected"):
        flow.check(0.0, reconnects=3)
