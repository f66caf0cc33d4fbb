"""The feed's checks before any consumer exists: which subjects a JWT's subscribe permission covers,
what a request may ask, and who is refused (real identities' permissions, as shared.auth writes them)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.web.feed import FeedRequest, authorize, read_request
from services.web.feed_cli import Message, Position, events
from services.web.sessions import Session, _allowed, covers
from shared.auth import permissions
from shared.errors import Invalid
from shared.identity import Forbidden, Identity

NANGONG = "changning.chengjiaqiao.nangong"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("pattern, filter_subject, covered", [
    ("cordon.evt.a.b.c.>", "cordon.evt.a.b.c.>", True),
    ("cordon.evt.a.b.>", "cordon.evt.a.b.c.>", True),   # a street's permission covers its committee
    ("cordon.evt.>", "cordon.evt.a.>", True),
    ("cordon.evt.a.b.c.>", "cordon.evt.a.b.>", False),  # a committee's does not cover its street
    ("cordon.evt.a.b.c.>", "cordon.evt.>", False),
    ("cordon.evt.a.b.d.>", "cordon.evt.a.b.c.>", False),
    ("cordon.evt.*.b.c.>", "cordon.evt.a.b.c.>", True),
    ("cordon.evt.a.*.c.>", "cordon.evt.a.>", False),    # '*' is one token, never what '>' may be
    ("cordon.evt.a.b.c.x", "cordon.evt.a.b.c.>", False),
    ("cordon.evt.a.b.c.>", "cordon.evt.a.b.c", False),  # '>' needs at least one more token
    ("_INBOX.li-wei.>", "cordon.evt.a.b.c.>", False),
])
def test_a_subscribe_permission_covers_a_filter_only_if_it_allows_every_subject_of_it(pattern, filter_subject, covered):
    assert covers(pattern, filter_subject) is covered


def session(identity: Identity) -> Session:
    """A session with the permissions the identity's JWT carries (no connection: none is used)."""
    claims = permissions(identity)
    return Session(token="t", identity=identity, nc=None, expires_at=0, subscribe=_allowed(claims, "sub", identity))


async def test_staff_read_their_community_and_nothing_else():
    li = session(Identity(name="li-wei", role="staff", scope=NANGONG))
    authorize(li, FeedRequest(scope=NANGONG, durable="default"))
    for elsewhere in ("changning.chengjiaqiao.beixin", "changning.chengjiaqiao", "city"):
        with pytest.raises(Forbidden, match="does not read"):
            authorize(li, FeedRequest(scope=elsewhere, durable="default"))


async def test_an_officer_reads_its_street_and_each_committee_in_it():
    wang = session(Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao"))
    authorize(wang, FeedRequest(scope="changning.chengjiaqiao", durable="default"))
    authorize(wang, FeedRequest(scope=NANGONG, durable="default"))
    with pytest.raises(Forbidden):
        authorize(wang, FeedRequest(scope="changning", durable="default"))


async def test_a_gate_device_has_no_feed():
    gate = session(Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1"))
    with pytest.raises(Forbidden, match="gate device has no feed"):
        authorize(gate, FeedRequest(scope=NANGONG, durable="default"))


async def test_a_city_system_reads_events_only_with_its_evt_grant():
    # Identity.reads lets every city system read the city: its JWT decides (what the bus would).
    with_evt = session(Identity(name="stats", role="city-system", grants=("evt",)))
    authorize(with_evt, FeedRequest(scope=NANGONG, durable="default"))
    without = session(Identity(name="arrivals", role="city-system", grants=("qry:rollup",)))
    with pytest.raises(Forbidden, match="do not allow subscribing"):
        authorize(without, FeedRequest(scope=NANGONG, durable="default"))


async def test_an_operator_has_no_limits():
    zhou = session(Identity(name="zhou", role="operator"))
    assert zhou.subscribe is None
    authorize(zhou, FeedRequest(scope="city", durable="default"))


def test_a_request_names_a_path_a_durable_slug_and_a_day_or_a_time():
    asked = read_request({"community": NANGONG}, None, SHANGHAI)
    assert (asked.durable, asked.since, asked.last, asked.filter) == ("default", None, None, f"cordon.evt.{NANGONG}.>")
    day = read_request({"community": NANGONG, "since": "2026-11-30", "durable": "duty-room-2"}, "41", SHANGHAI)
    assert day.since == datetime(2026, 11, 29, 16, tzinfo=timezone.utc) and day.last == 41  # midnight in Shanghai
    moment = read_request({"community": NANGONG, "since": "2026-11-30T08:00:00+08:00"}, None, SHANGHAI)
    assert moment.since == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert read_request({"community": NANGONG, "since": "2026-11-30T00:00:00Z"}, None, SHANGHAI).since == \
        datetime(2026, 11, 30, tzinfo=timezone(timedelta(0)))


@pytest.mark.parametrize("params, last, field", [
    ({}, None, "community"),
    ({"community": "changning.chengjiaqiao.nangong.b1"}, None, "community"),
    ({"community": "cordon.evt.>"}, None, "community"),
    ({"community": NANGONG, "durable": "My Phone"}, None, "durable"),
    ({"community": NANGONG, "durable": "x" * 41}, None, "durable"),
    ({"community": NANGONG, "since": "yesterday"}, None, "since"),
    ({"community": NANGONG, "since": "2026-11-30T08:00:00"}, None, "since"),  # no offset: whose 8 o'clock?
    ({"community": NANGONG}, "abc", "Last-Event-ID"),
])
def test_a_request_that_asks_nonsense_is_invalid_naming_the_field(params, last, field):
    with pytest.raises(Invalid) as refused:
        read_request(params, last, SHANGHAI)
    assert refused.value.field == field


async def test_the_client_reads_server_sent_events_as_the_standard_says():
    async def source():
        for line in [": feed webfeed-li-wei-default", "", "id: 7", "event: CaseOpened", 'data: {"a":', "data: 1}",
                     "", "data:no space", "", ": keep-alive", ""]:
            yield line

    got = [m async for m in events(source())]
    assert got == [Message("7", "CaseOpened", '{"a":\n1}'), Message("7", "message", "no space")]


def test_the_position_is_kept_private_and_belongs_to_its_community(tmp_path):
    mine = Position(tmp_path / "feed", "li-wei", "laptop", NANGONG)
    assert mine.last is None
    mine.remember(41)
    assert (mine.path.stat().st_mode & 0o777) == 0o600 and mine.path.read_text() == f"41 {NANGONG}\n"
    assert Position(tmp_path / "feed", "li-wei", "laptop", NANGONG).last == 41
    # The same device name following another community starts without it.
    assert Position(tmp_path / "feed", "li-wei", "laptop", "changning.chengjiaqiao.beixin").last is None


# -- Ctrl-C always ends `cordon feed` -----------------------------------------------------------

_STUBBORN = """
import asyncio, sys
from services.web.feed_cli import until_interrupted

async def work():
    print("working", flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # as a library that loses a cancellation would
            if sys.argv[1] == "stubborn":
                continue
            raise

sys.exit(asyncio.run(until_interrupted(work(), grace=0.5)))
"""


@pytest.mark.parametrize("kind", ["polite", "stubborn"])
def test_ctrl_c_ends_the_feed_with_130_even_when_its_work_ignores_the_cancellation(kind):
    import signal
    import subprocess
    import sys

    # Given the feed's work running (one that stops when cancelled, or one that does not)
    process = subprocess.Popen([sys.executable, "-c", _STUBBORN, kind], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"working\n"
        # When Ctrl-C
        process.send_signal(signal.SIGINT)
        # Then it exits 130, quietly: at once, or after the grace period (20 s: a bound on a hang,
        # not a measured figure)
        assert process.wait(timeout=20) == 130
        assert process.stderr.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
