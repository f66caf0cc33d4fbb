"""The live board over plain HTTP, against the real gateway, services, NATS and PostgreSQL: logging in
with the form, the page as each role sees it, and the server-sent events that keep it current
(``GET /board/events``): the board at once, again after an event of the page's community, nothing
for another community's event, and a page gone leaves the hub at once. The browser's side is
tests/integration/test_web_board_browser.py."""
from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pytest
from nats.js.api import AckPolicy, DeliverPolicy

from shared import bus
from shared.subjects import STREAM
from tests.support.bus import authority_for, connect

from tests.support.board import LI_WEI, NANGONG_GATE, WANG_FANG, ZHAO_LEI, street
from tests.support.cordon import eventually
from tests.support.web import creds, gateway, login, login_form, sse

pytestmark = pytest.mark.integration


def figure(fragment: str, name: str) -> str:
    """The number a figure shows (``data-figure`` card)."""
    found = re.search(rf'data-figure="{name}">.*?<div class="n">([^<]*)</div>', fragment)
    assert found, f"no figure {name} in {fragment[:300]}"
    return found[1]


def rows(fragment: str, name: str) -> list[str]:
    """The rows of one list (``<section id=name>``)."""
    section = re.search(rf'<section class="list" id="{name}">(.*?)</section>', fragment)
    assert section, f"no list {name}"
    return re.findall(r"<li[^>]*>(.*?)</li>", section[1])


async def next_message(stream, what: str = "a message", timeout: float = 10.0):
    try:
        return await asyncio.wait_for(anext(stream), timeout)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None


async def next_board(stream, what: str, timeout: float = 10.0):
    """The next ``board`` message, past keep-alive comments (one may come before an event's board:
    the event reaches the stream a moment after the command's reply)."""
    try:
        async with asyncio.timeout(timeout):
            while (msg := await anext(stream)).event is None:
                pass
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None
    return msg


async def passage(http, headers, committee, resident: str, temperature: float) -> dict:
    reply = await http.post("/v1/commands/checkpoint/check_passage", headers={
        **headers, "idempotency-key": f"gate-{uuid.uuid4()}"}, json={
        "community": committee.community, "compound": committee.compound, "gate": "g1", "direction": "in",
        "temperature_c": temperature,
        "pass": committee.passes[resident]})
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_the_stream_sends_the_board_at_once_then_after_each_event_of_its_community_and_none_for_another(
        nats_url, pg_dsn):
    async with street(nats_url, pg_dsn, busy=False) as s, gateway(nats_url, keepalive_s=0.3) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            nangong, beixin, gate = [await login(http, creds(nats_url, who)[1])
                                     for who in (LI_WEI, ZHAO_LEI, NANGONG_GATE)]
            assert (await http.get("/board/events", headers=gate)).status_code == 403  # a gate has no board
            async with http.stream("GET", "/board/events", headers=nangong) as n_reply, \
                    http.stream("GET", "/board/events", headers=beixin) as b_reply:
                assert n_reply.headers["content-type"].startswith("text/event-stream")
                n, b = sse(n_reply), sse(b_reply)
                # given both committees' pages open: each gets its board at once
                first = await next_message(n, "first board", timeout=3)
                assert first.event == "board" and figure(first.data, "fevers_today") == "0"
                assert rows(first.data, "denied") == []
                assert (await next_message(b, "first board", timeout=3)).event == "board"
                assert (await http.get("/readyz")).json()["live_pages"] == 2

                # when Nangong's gate turns back a resident with a fever
                resident = next(iter(s.nangong.passes))
                decided = await passage(http, gate, s.nangong, resident, 38.5)
                assert decided["decision"] == {"allowed": False, "reason": "fever"}
                # then Nangong's page gets its board again, with the fever and the denial
                moved = await next_board(n, "board after the fever")
                assert moved.event == "board" and figure(moved.data, "fevers_today") == "1"
                [denial] = rows(moved.data, "denied")
                assert 'data-reason="fever"' in denial and "38.5" in denial
                seq = int(re.search(r'<li data-seq="(\d+)"', moved.data)[1])
                assert int(moved.id) >= seq  # the id: the stream sequence the board reflects

                # and Beixin's page is told nothing: the hub went past that event, and its next
                # message is a keep-alive saying so, not a board
                while (msg := await next_message(b, "keep-alive")).comment is None or \
                        int(msg.comment.split()[1]) < int(moved.id):
                    assert msg.event is None, f"Beixin's page was sent a board (id {msg.id}) for Nangong's event"

                # when a Beixin resident goes through their own gate: their page moves, not Nangong's
                mine = next(iter(s.beixin.passes))
                await passage(http, beixin, s.beixin, mine, 36.6)
                theirs = await next_board(b, "Beixin's board after its passage")
                assert theirs.event == "board" and len(rows(theirs.data, "passed")) == 1
                assert rows(theirs.data, "denied") == [] and figure(theirs.data, "fevers_today") == "0"

            # a page gone leaves the hub at once
            await eventually(lambda: _pages(http, 0), timeout=2, what="the pages to leave the hub")


async def _pages(http, n: int) -> bool:
    return (await http.get("/readyz")).json()["live_pages"] == n


async def test_the_login_form_sets_a_strict_cookie_and_the_board_follows_it(nats_url, pg_dsn):
    async with street(nats_url, pg_dsn) as s, gateway(nats_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            # given no session: the board sends the browser to the form, which works without JS
            away = await http.get("/")
            assert (away.status_code, away.headers["location"]) == (303, "/login")
            form = await http.get("/login")
            assert 'enctype="multipart/form-data"' in form.text and 'type="file"' in form.text
            assert "script-src 'self'" in form.headers["content-security-policy"]
            # when the staff send their creds file
            logged = await login_form(http, creds(nats_url, LI_WEI)[1])
            assert (logged.status_code, logged.headers["location"]) == (303, "/")
            cookie = logged.headers["set-cookie"]
            assert cookie.startswith("cordon_session=") and "HttpOnly" in cookie
            assert "SameSite=strict" in cookie and "Path=/" in cookie
            # then the board is theirs: Chinese labels with the English beside, every value escaped
            page = await http.get("/")
            assert page.status_code == 200 and "南宫居民区" in page.text
            assert '<span class="zh">今日发热</span> <span class="en">fevers today</span>' in page.text
            assert figure(page.text, "welfare_checks_open") == "1" and len(rows(page.text, "welfare")) == 1
            assert len(rows(page.text, "passed")) == 1 and len(rows(page.text, "missed")) == 1
            # and no household's address: it stays in the registry (HouseholdRegistered schema 2)
            assert "east wing" not in page.text and "b1-102" not in page.text
            assert '<meta name="viewport"' in page.text and '<script src="/static/board.js"' in page.text
            assert (await http.get("/static/board.js")).status_code == 200
            # when they log out, the session is over
            out = await http.post("/logout")
            assert (out.status_code, out.headers["location"]) == (303, "/login")
            assert (await http.get("/")).status_code == 303
            # and creds the server refuses get the form again, saying so
            refused = await login_form(http, "not a creds file")
            assert refused.status_code == 422 and "creds" in refused.text and "cordon_session" not in refused.headers.get(
                "set-cookie", "")
            del s


async def test_a_street_officer_sees_the_streets_report_with_a_column_per_committee(nats_url, pg_dsn):
    async with street(nats_url, pg_dsn, busy=False) as s, gateway(nats_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await login_form(http, creds(nats_url, WANG_FANG)[1])
            page = await http.get("/")
            assert page.status_code == 200
            heads = re.findall(r'<th scope="col" data-community="([^"]+)">([^<]+)</th>', page.text)
            assert heads == [(s.beixin.community, "beixin"), (s.nangong.community, "南宫居民区")]
            households = re.search(r'<tr data-figure="households">(.*?)</tr>', page.text)[1]
            assert re.findall(r"<td[^>]*>([^<]*)</td>", households) == ["1", "3", "4"]
            assert '<span class="zh">户数</span> <span class="en">households</span>' in households


async def test_each_gateway_pulls_one_live_consumer_of_its_own_which_goes_when_it_stops(nats_url):
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js)

        async def live() -> list:
            return [c for c in await js.consumers_info(STREAM) if c.name.startswith("web-live-")]

        # given two gateways on one NATS
        async with gateway(nats_url), gateway(nats_url):
            consumers = await eventually(lambda: _two(live), what="two live consumers")
            # then each has its own: every event, from now on, unacknowledged, in memory, and the
            # server drops it an hour after its gateway stopped pulling
            for c in consumers:
                assert c.config.durable_name == c.name and c.config.filter_subject == "cordon.evt.>"
                assert (c.config.deliver_policy, c.config.ack_policy) == (DeliverPolicy.NEW, AckPolicy.NONE)
                assert c.config.inactive_threshold == 3600 and c.config.mem_storage
        # when they stop, they take their consumers with them
        assert await live() == []
    finally:
        await nc.close()


async def _two(live):
    consumers = await live()
    return consumers if len(consumers) == 2 else None


async def test_a_revoked_identitys_open_board_is_told_its_session_ended_and_gets_nothing_more(nats_url):
    nc = await connect(nats_url)
    await bus.ensure_stream(nc.jetstream())
    await nc.close()
    async with gateway(nats_url, keepalive_s=0.3) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        key, text = creds(nats_url, LI_WEI)
        headers = await login(http, text)
        async with http.stream("GET", "/board/events", headers=headers) as reply:
            stream = sse(reply)
            assert (await next_message(stream, "first board", timeout=3)).event == "board"
            await asyncio.sleep(1.1)  # a revocation covers the JWTs issued up to its second
            # when the operators revoke the identity (the account pushed with its key revoked)
            await authority_for(nats_url).push_account(nats_url, "CITY", {key: int(time.time())})
            # then its page is told the session is over (within a keep-alive), and the stream ends there
            async with asyncio.timeout(5):
                while (msg := await anext(stream)).event != "end":
                    assert msg.event is None, f"a revoked identity was sent {msg.event}"
            assert [m async for m in stream] == []
        assert await _pages(http, 0)
