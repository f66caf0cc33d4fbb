"""`cordon demo` and `cordon load` on real servers, with every service as a child process (as
`cordon up` runs them): a shortened day shows on the committees' boards exactly as the scenario
played it; the same seed again changes nothing; another seed adds to what is there; the load tool
reports rates and percentiles with a JSON line last; `cordon demo` as a newcomer runs it prints its
tables and progress, and no log line unless asked (-v)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import sys
import uuid

import pytest

from services.demo import cli, run, system
from services.demo.client import Api, qry
from services.demo.street import STREET
from shared.config import Config
from shared.embedded import ensure_database
from tests.support.bus import creds_for, start_secure_nats

pytestmark = pytest.mark.integration
SCALE = 0.02


@pytest.fixture(scope="module")
async def cordon(pg_server, tmp_path_factory):
    """A fresh Cordon: its own NATS (operator mode) and database, the demo's five services as
    processes, each with its own credentials."""
    folder = tmp_path_factory.mktemp("demo")
    nats_server = await start_secure_nats(folder)
    dsn = await ensure_database(pg_server.dsn, f"demo_{uuid.uuid4().hex[:12]}")
    try:
        async with system.services(nats_server.url, dsn, folder / "logs", creds=creds_for(nats_server.url),
                                   authority=nats_server.authority):
            yield nats_server.url
    finally:
        await nats_server.stop()


async def figures(url: str, community: str) -> dict:
    api = await Api.connect(url, creds_for(url))
    try:
        return (await api.send(qry("community", community=community, on="2020-02-17")))["figures"]
    finally:
        await api.close()


@pytest.mark.timeout(240)
async def test_a_shortened_day_shows_on_every_board_exactly_as_played(cordon):
    result = await run.play(cordon, creds_for(cordon), seed=11, scale=SCALE, quiet=True)

    assert not result.replayed
    assert [(c.community, c.diffs) for c in result.checks] == [(c.community, {}) for c in result.checks]
    assert len(result.checks) == 3
    assert result.played.unintended == [] and result.played.notes == [] and result.ok
    # Every phase was accepted (gate refusals are accepted decisions), and the day touched it all.
    assert result.played.accepted == result.played.sent
    nangong = result.checks[0].board["figures"]
    assert nangong["residents"] > 200 and nangong["sealed_buildings"] == 1 and nangong["welfare_checks_open"] == 1
    street = [c.board["figures"] for c in result.checks]
    for figure in ("quarantine_home", "quarantine_monitoring", "quarantine_hospital", "fevers", "checkins_missed",
                   "passages_denied", "deliveries", "arrivals_pending", "daily_supply_households"):
        assert sum(f[figure] for f in street) > 0, figure
    assert {"allowed", "fever", "under_quarantine", "building_sealed", "gate_closed", "no_valid_pass",
            "visitors_not_admitted"} <= set(result.played.decisions)
    assert "the committee's board for 2020-02-17" in result.text
    assert "the street's daily report for 2020-02-17 (3 committees)" in result.text

    again = await run.play(cordon, creds_for(cordon), seed=11, scale=SCALE, quiet=True)  # the same ids: stored replies
    assert again.replayed and all(c.ok for c in again.checks)
    assert [c.board["figures"] for c in again.checks] == street


@pytest.mark.timeout(240)
async def test_cordon_demo_with_another_seed_adds_to_the_boards_and_exits_0(cordon):
    before = await figures(cordon, f"{STREET}.xinjing")
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["demo", "--seed", "12", "--scale", str(SCALE), "--nats-url", cordon])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = await asyncio.to_thread(args.run, args, Config(nats_creds=creds_for(cordon)))
    assert code == 0, out.getvalue()
    assert out.getvalue().count("show exactly what the scenario did") == 3
    after = await figures(cordon, f"{STREET}.xinjing")
    assert after["residents"] > before["residents"] and after["households"] > before["households"]


@pytest.mark.timeout(120)
async def test_cordon_load_reports_rate_latency_and_a_json_line_last(cordon):
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["load", "--rate", "150", "--duration", "2", "--households", "40",
                              "--nats-url", cordon, "--mix", "passage=6,arrival=1,masks=1,request=1,household=1"])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = await asyncio.to_thread(args.run, args, Config(nats_creds=creds_for(cordon)))
    lines = out.getvalue().strip().splitlines()
    summary = json.loads(lines[-1])
    assert code == 0, out.getvalue()
    # it measured once the services had applied the set-up
    assert "settled: every outbox published and every consumer caught up" in err.getvalue()
    assert summary["sent"] == summary["completed"] == 300 and summary["errors"] == {} and summary["dropped"] == 0
    assert summary["ok"] + sum(summary["rejected"].values()) == 300
    assert set(summary["kinds"]) == {"passage", "arrival", "masks", "request", "household"}
    for kind in summary["kinds"].values():
        assert 0 <= kind["p50_ms"] <= kind["p90_ms"] <= kind["p99_ms"] <= kind["max_ms"]
    assert 100 <= summary["rate_achieved"] <= 160
    assert any(line.startswith("  passage") for line in lines)
    # The set-up is reused: a second run replays it and measures again, after a warm-up not counted.
    args = parser.parse_args(["load", "--rate", "50", "--duration", "1", "--warmup", "1", "--households", "40",
                              "--nats-url", cordon])
    with contextlib.redirect_stdout(out2 := io.StringIO()), contextlib.redirect_stderr(err2 := io.StringIO()):
        assert await asyncio.to_thread(args.run, args, Config(nats_creds=creds_for(cordon))) == 0
    second = json.loads(out2.getvalue().strip().splitlines()[-1])
    assert (second["completed"], second["warmup_s"]) == (50, 1.0)
    assert "warm-up: 1 s at 50/s, not counted" in err2.getvalue()


# -- the demo's output is for people: no log lines -------------------------------------------------

LOG_LINE = re.compile(r"^\S+ \S+ \[(debug|info|warning|error|critical)\s*\] ")


def is_log_line(line: str) -> bool:
    """A structlog line: a JSON object with an event and a level, or the console renderer's form."""
    if LOG_LINE.match(line):
        return True
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and {"event", "level"} <= set(record)


async def cordon_cli(*argv: str) -> tuple[int, str, str]:
    """`cordon ARGV` as a newcomer types it: no CORDON_* variable set; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *argv, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(400)
async def test_cordon_demo_prints_its_tables_and_progress_and_no_log_line_unless_verbose(tmp_path):
    # Given a newcomer's first `cordon demo`, on embedded servers of its own
    code, out, err = await cordon_cli("demo", "--scale", "0.01", "--data-dir", str(tmp_path / "demo"))

    # Then stdout holds the boards and stderr the demo's progress, and neither a log line
    assert code == 0, err
    assert [line for line in (out + err).splitlines() if is_log_line(line)] == []
    assert "the committee's board for 2020-02-17" in out and out.count("show exactly what the scenario did") == 3
    assert err.startswith("cordon demo: embedded NATS") and "  residents registered" in err
    # the log went to a file beside the services' logs
    logged = (tmp_path / "demo" / "logs" / "demo.log").read_text().splitlines()
    assert logged and all(is_log_line(line) for line in logged)
    assert {"nats-server.started", "postgres.started"} <= {json.loads(line)["event"] for line in logged}
    # its services ran as their own PostgreSQL roles, as under `cordon up` (a password each, kept)
    assert sorted(p.name for p in (tmp_path / "demo" / "auth" / "pg").iterdir()) == sorted(
        f"{name}.password" for name in system.NAMES)

    # When it is played again with -v (the same day: replayed), the log is on stderr too
    code, out, err = await cordon_cli("demo", "-v", "--scale", "0.01", "--data-dir", str(tmp_path / "demo"))
    assert code == 0, err
    assert out.count("the same as before") == 3
    assert "postgres.started" in {json.loads(line)["event"] for line in err.splitlines() if is_log_line(line)}
