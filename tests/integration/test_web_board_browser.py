"""The live board in a real browser (headless Chromium driven by Playwright) against the real
gateway, services, NATS and PostgreSQL: staff log in with their creds file through the form, see
their board, and see a fever at their gate appear without reloading, and reveal a household's
names with a purpose, inline; the next committee's staff,
logged in beside them, see none of it; the board fits a phone's screen.

One screenshot of Nangong's board after the update is taken (a temporary file; with
``CORDON_BOARD_SCREENSHOT=services/web/static/board.png`` it is written there: that is how the
README's picture is made).
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.board import LI_WEI, NANGONG_GATE, ZHAO_LEI, Committee, street
from tests.support.web import creds, gateway, login

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
#: As a root process on a closed network runs Chromium (no sandbox: Playwright's default; no
#: background connections that this machine refuses).
ARGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic"]
DESKTOP = {"width": 1000, "height": 900}
PHONE = {"width": 390, "height": 844}


#: Notes in the page when the fever figure and the denial first show (the DOM changing, not a poll).
WATCH = """() => {
  window.seen = {notReloaded: true};
  const note = () => {
    const fever = document.querySelector('[data-figure="fevers_today"] .n');
    if (fever && fever.textContent === "1" && !window.seen.fever) window.seen.fever = Date.now();
    if (document.querySelector('#denied [data-reason="fever"]') && !window.seen.denial) window.seen.denial = Date.now();
  };
  new MutationObserver(note).observe(document.getElementById("board"), {childList: true, subtree: true});
}"""


async def logged_in(browser: Browser, base: str, creds_file: Path, viewport: dict, **options) -> Page:
    """A fresh browser context that logged in through the form and shows the live board."""
    context = await browser.new_context(viewport=viewport, **options)
    page = await context.new_page()
    await page.goto(f"{base}/")
    assert page.url == f"{base}/login"  # no session yet: the form
    await page.set_input_files("#creds", str(creds_file))
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    await expect(page.locator("#live.on")).to_be_visible()  # the event stream delivered its first board
    return page


def creds_file(tmp_path: Path, nats_url: str, who) -> Path:
    path = tmp_path / f"{who.name}.creds"
    path.write_text(creds(nats_url, who)[1])
    return path


async def passage(http: httpx.AsyncClient, headers: dict, c: Committee, resident: str, temperature: float) -> dict:
    reply = await http.post("/v1/commands/checkpoint/check_passage", headers={
        **headers, "idempotency-key": f"gate-{uuid.uuid4()}"}, json={
        "community": c.community, "compound": c.compound, "gate": "g1", "direction": "in",
        "temperature_c": temperature, "pass": c.passes[resident]})
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_staff_see_a_fever_at_their_gate_live_and_the_next_committee_sees_none_of_it(
        nats_url, pg_dsn, tmp_path):
    assert os.path.exists(CHROMIUM), f"no browser at {CHROMIUM}: apt-get install chromium (what .ci/run does)"
    async with street(nats_url, pg_dsn) as s, gateway(nats_url) as base, async_playwright() as pw, \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # given Nangong's staff and Beixin's, each logged in in a browser of their own
            nangong = await logged_in(browser, base, creds_file(tmp_path, nats_url, LI_WEI), DESKTOP)
            beixin = await logged_in(browser, base, creds_file(tmp_path, nats_url, ZHAO_LEI), DESKTOP)
            fevers = nangong.locator('[data-figure="fevers_today"] .n')
            await expect(fevers).to_have_text("0")
            await expect(nangong.locator("#denied li")).to_have_count(0)
            await expect(nangong.locator("h1")).to_contain_text("南宫居民区")
            await nangong.evaluate(WATCH)  # and no reload may forget it

            # when Nangong's gate turns back a resident with a fever, through the HTTP API
            gate = await login(http, creds(nats_url, NANGONG_GATE)[1])
            resident = next(iter(s.nangong.passes))
            decided = await passage(http, gate, s.nangong, resident, 38.5)
            replied = time.time()
            assert decided["decision"] == {"allowed": False, "reason": "fever"}

            # then, without a reload, their board shows the fever and the denial
            await expect(fevers).to_have_text("1")
            await expect(nangong.locator('#denied li [data-reason="fever"]')).to_have_count(1)
            await expect(nangong.locator("#denied li")).to_contain_text("38.5")
            seen = await nangong.evaluate("window.seen")
            assert seen["notReloaded"]
            print(f"\nboard: check_passage reply -> fever figure in the DOM {seen['fever'] - 1000 * replied:.0f} ms, "
                  f"-> denial row {seen['denial'] - 1000 * replied:.0f} ms (the page's clock: when the DOM changed)")
            shot = Path(os.environ.get("CORDON_BOARD_SCREENSHOT") or tmp_path / "board.png")
            await nangong.screenshot(path=str(shot), full_page=True)

            # and the welfare check's household shows masked; revealed with a purpose, inline, no reload
            welfare = nangong.locator("#welfare li").first
            await expect(welfare).to_contain_text("王*伟")
            await welfare.locator("summary").click()
            await welfare.locator('input[name="purpose"]').fill("welfare check: nobody answered")
            await welfare.locator("form.reveal button").click()
            await expect(welfare.locator(".revealed")).to_contain_text("王小伟")
            await expect(welfare.locator(".revealed")).to_contain_text("PersonalDataViewed")
            assert (await nangong.evaluate("window.seen"))["notReloaded"]
            # closing it takes the record off the page
            await welfare.locator("summary").click()
            await expect(nangong.locator("#board")).not_to_contain_text("王小伟")

            # and Beixin's board shows none of it: after a passage at their own gate (seen live),
            # still no fever and no denial
            mine = await login(http, creds(nats_url, ZHAO_LEI)[1])
            await passage(http, mine, s.beixin, next(iter(s.beixin.passes)), 36.6)
            await expect(beixin.locator("#passed li")).to_have_count(1)
            await expect(beixin.locator('[data-figure="fevers_today"] .n')).to_have_text("0")
            await expect(beixin.locator("#denied li")).to_have_count(0)
            await expect(beixin.locator("#board [data-reason]")).to_have_count(0)
            assert "38.5" not in await beixin.locator("#board").inner_text()

            # and on a phone-sized screen the board fits: one column, no sideways scrolling
            phone = await logged_in(browser, base, creds_file(tmp_path, nats_url, LI_WEI), PHONE,
                                    is_mobile=True, has_touch=True, device_scale_factor=3)
            await expect(phone.locator('[data-figure="fevers_today"] .n')).to_have_text("1")
            # (a mobile browser widens its layout viewport to content that does not fit: innerWidth too)
            scroll_width, inner_width = await phone.evaluate(
                "[document.scrollingElement.scrollWidth, window.innerWidth]")
            assert scroll_width <= inner_width == PHONE["width"]
            boxes = [await phone.locator(f"#{name}").bounding_box() for name in ("denied", "passed")]
            assert boxes[0]["x"] == boxes[1]["x"] and boxes[1]["y"] > boxes[0]["y"]  # stacked
        finally:
            await browser.close()
