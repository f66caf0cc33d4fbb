"""The board's people, masked, and the reveal of one record, over plain HTTP against the real
gateway, services, NATS and PostgreSQL: the page and its live stream carry masked names only; a
reveal (``POST /board/reveal``, the plain form) shows one record's names and address to the
committee's own staff and is recorded as one PersonalDataViewed; another committee's staff and an
officer are refused and nothing is recorded. The browser's side (the inline reveal) is in
tests/integration/test_web_board_browser.py."""
from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.board import LI_WEI, WANG_FANG, ZHAO_LEI, street
from tests.support.web import creds, gateway, login_form, sse

pytestmark = pytest.mark.integration

NAME, MASKED = "王小伟", "王*伟"
#: The first household's address (tests/support/board.py), escaped as the page must show it.
ADDRESS = "b1-101 &lt;east wing&gt; &amp; store"


def section(page: str, name: str) -> str:
    found = re.search(rf'<section class="list" id="{name}">(.*?)</section>', page)
    assert found, f"no list {name}"
    return found[1]


def subject(html: str, kind: str) -> str:
    """The id a row's reveal form posts (``<input type="hidden" name=kind value=…>``)."""
    found = re.search(rf'<input type="hidden" name="{kind}" value="([^"]+)">', html)
    assert found, f"no reveal of a {kind} in {html[:300]}"
    return found[1]


async def reads(db) -> list[dict]:
    """Every PersonalDataViewed the registry recorded: who read whom, and why."""
    rows = await db.fetch("SELECT convert_from(envelope, 'UTF8') AS e FROM registry.events "
                          "WHERE type = 'PersonalDataViewed' ORDER BY position")
    return [json.loads(r["e"])["data"] for r in rows]


async def first_board(http: httpx.AsyncClient) -> str:
    async with http.stream("GET", "/board/events") as reply:
        async for msg in sse(reply):
            if msg.event == "board":
                return msg.data
    raise AssertionError("the stream ended without a board")


async def test_staff_see_masked_names_and_a_reveal_shows_one_record_recorded_once(nats_url, pg_dsn):
    async with street(nats_url, pg_dsn) as s, gateway(nats_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await login_form(http, creds(nats_url, LI_WEI)[1])
            # given Nangong's board: its welfare check, missed check-in and supply request name
            # people by their masked names, each with a reveal form, and nothing personal
            page = (await http.get("/")).text
            for name in ("welfare", "missed", "requests"):
                assert MASKED in section(page, name) and 'action="/board/reveal"' in section(page, name), name
            assert NAME not in page and "east wing" not in page
            household = subject(section(page, "welfare"), "household")
            assert await reads(s.db) == []

            # when li-wei reveals the household of the welfare check, saying why (the plain form)
            shown = await http.post("/board/reveal", data={"household": household,
                                                           "purpose": "welfare check: nobody answered"})
            # then the page shows its resident's name and the door, strictly as the board's pages
            assert shown.status_code == 200, shown.text
            assert NAME in shown.text and ADDRESS in shown.text and "PersonalDataViewed" in shown.text
            assert "script-src 'self'" in shown.headers["content-security-policy"]
            assert shown.headers["cache-control"] == "no-store"
            # and the read is on the record once: who, whose, why
            [read] = await reads(s.db)
            assert (read["viewer"], read["subject"], read["subject_kind"]) == ("staff:li-wei", household, "household")
            assert read["purpose"] == "welfare check: nobody answered"

            # when board.js asks for the missed check-in's resident: the fragment alone, one read more
            resident = subject(section(page, "missed"), "resident")
            inline = await http.post("/board/reveal", data={"resident": resident, "purpose": "missed check-in call"},
                                     headers={"x-cordon-fragment": "1"})
            assert inline.status_code == 200 and NAME in inline.text and "<html" not in inline.text
            assert [r["subject"] for r in await reads(s.db)] == [household, resident]

            # and the live stream, asked after the reveals, carries masked names only
            live = await first_board(http)
            assert MASKED in live and NAME not in live and "east wing" not in live


async def test_other_staff_an_officer_and_a_purpose_that_says_nothing_are_refused_and_nothing_is_recorded(
        nats_url, pg_dsn):
    async with street(nats_url, pg_dsn) as s, gateway(nats_url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as nangong, \
                httpx.AsyncClient(base_url=base, timeout=10) as beixin, \
                httpx.AsyncClient(base_url=base, timeout=10) as officer:
            await login_form(nangong, creds(nats_url, LI_WEI)[1])
            household = subject(section((await nangong.get("/")).text, "welfare"), "household")
            await login_form(beixin, creds(nats_url, ZHAO_LEI)[1])
            await login_form(officer, creds(nats_url, WANG_FANG)[1])
            ask = {"household": household, "purpose": "welfare check: nobody answered"}
            # when Beixin's staff post a reveal of Nangong's household: forbidden, nothing shown
            other = await beixin.post("/board/reveal", data=ask)
            assert other.status_code == 403 and "forbidden" in other.text and NAME not in other.text
            # the street's officer reads figures, not people: its report has no reveal, and a
            # reveal posted anyway is refused
            assert "/board/reveal" not in (await officer.get("/")).text
            street_officer = await officer.post("/board/reveal", data=ask)
            assert street_officer.status_code == 403 and NAME not in street_officer.text
            # and the committee's own staff must say why
            vague = await nangong.post("/board/reveal", data={"household": household, "purpose": "x"})
            assert vague.status_code == 422 and NAME not in vague.text
            # then nothing was recorded (the registry records a read before it answers)
            assert await reads(s.db) == []
            # and the masked names are answered for the identity's own community only: a Beixin
            # resident asked under Nangong is left out, and Beixin's names are not Nangong's to ask
            theirs = next(iter(s.beixin.passes))
            names = await nangong.get("/v1/queries/registry.names",
                                      params={"community": s.nangong.community, "residents": theirs})
            assert names.status_code == 200 and names.json()["residents"] == []
            names = await nangong.get("/v1/queries/registry.names",
                                      params={"community": s.beixin.community, "residents": theirs})
            assert names.status_code == 403
            # and without a session the form goes to the login page
            async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
                away = await anonymous.post("/board/reveal", data=ask)
                assert (away.status_code, away.headers["location"]) == (303, "/login")
