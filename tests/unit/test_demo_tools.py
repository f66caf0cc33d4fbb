"""The load generator's pure parts, the tables, the settle rule, and the demo's promise to use only
the public message API (no imports of other services' code)."""
from __future__ import annotations

import ast
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.demo import load, tables
from services.demo.client import Tally, cmd, qry, settled

DEMO = Path(__file__).resolve().parents[2] / "services" / "demo"
NOW = datetime(2020, 2, 17, 9, 0, tzinfo=load.CST)


# -- load ----------------------------------------------------------------------------------------


def test_mix_parses_weights_and_refuses_what_it_does_not_know():
    assert load.parse_mix(None) == load.DEFAULT_MIX
    assert load.parse_mix("passage=9, masks=1") == {"passage": 9, "masks": 1}
    assert load.parse_mix("arrival") == {"arrival": 1}
    for bad in ("teleport=1", "passage=x", "passage=-1", "passage=0"):
        with pytest.raises(ValueError):
            load.parse_mix(bad)


def test_percentiles_are_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert [load.percentile(values, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert load.percentile([], 50) == 0.0 and load.percentile([7.0], 99) == 7.0


def site():
    s = load.site_for(5, 20)
    s.passes = {h: f"N{i:09d}" for i, h in enumerate(s.households)}
    return s


def test_the_generator_sends_the_same_sequence_for_the_same_seed_with_the_runs_ids():
    a = load.Generator(site(), load.DEFAULT_MIX, 5, "run-a")
    b = load.Generator(site(), load.DEFAULT_MIX, 5, "run-b")
    for _ in range(300):
        (ka, ca), (kb, cb) = a.next(NOW), b.next(NOW)
        assert ka == kb and ca.subject == cb.subject
        assert {k: v for k, v in ca.body.items() if k != "command_id"} == \
               {k: v for k, v in cb.body.items() if k != "command_id"}
        assert ca.body["command_id"].startswith("load:run-a:") and cb.body["command_id"].startswith("load:run-b:")
    five, six = (load.Generator(site(), load.DEFAULT_MIX, seed, "run-a") for seed in (5, 6))
    assert [five.next(NOW)[1].body for _ in range(20)] != [six.next(NOW)[1].body for _ in range(20)]


def test_the_generator_follows_the_mix_and_targets_the_set_up_data():
    s = site()
    gen = load.Generator(s, {"passage": 3, "masks": 1}, 1, "r")
    kinds = [gen.next(NOW) for _ in range(2000)]
    share = sum(k == "passage" for k, _ in kinds) / len(kinds)
    assert 0.7 < share < 0.8
    for kind, call in kinds:
        if kind == "passage":
            assert call.subject == "cordon.cmd.checkpoint.check_passage"
            assert call.body["pass"] in s.passes.values() and call.body["compound"] == s.compound
        else:
            assert call.subject == "cordon.cmd.logistics.reserve_masks" and call.body["household"] in s.households
        assert call.body["occurred_at"] == NOW.isoformat()
    every = load.Generator(s, {k: 1 for k in load.DEFAULT_MIX}, 2, "r")
    seen = {every.next(NOW)[0] for _ in range(500)}
    assert seen == set(load.DEFAULT_MIX)


def test_the_quarantine_kinds_are_off_by_default_and_target_the_set_up_round_and_cases():
    assert not set(load.QUARANTINE_KINDS) & set(load.DEFAULT_MIX)
    assert load.parse_mix("checkin=2,sample") == {"checkin": 2, "sample": 1}
    s = site()
    s.screening, s.cases = "round-1", ["case-1", "case-2"]
    gen = load.Generator(s, {k: 1 for k in load.QUARANTINE_KINDS}, 3, "r")
    drawn = [gen.next(NOW) for _ in range(300)]
    assert {kind for kind, _ in drawn} == set(load.QUARANTINE_KINDS)
    for kind, call in drawn:
        body = call.body
        if kind == "case":  # a fresh case id each time: a second case is refused case_open, never conflict
            assert call.subject == "cordon.cmd.quarantine.open_case" and body["resident"] in s.residents
            assert body["starts_on"] == NOW.date().isoformat() and body["case"].startswith("lc-r-")
        elif kind == "seal":
            assert call.subject in ("cordon.cmd.quarantine.seal", "cordon.cmd.quarantine.lift_seal")
            assert body["compound"] == s.compound and body.get("building", "b01") == "b01"
        elif kind == "checkin":
            assert call.subject == "cordon.cmd.quarantine.record_checkin" and body["case"] in s.cases
            assert body["on"] == NOW.date().isoformat()
        else:
            assert call.subject == "cordon.cmd.quarantine.record_sample"
            assert body["screening"] == "round-1" and body["resident"] in s.residents
    assert len({c.body["case"] for k, c in drawn if k == "case"}) == sum(k == "case" for k, _ in drawn)


def test_stats_keep_domain_refusals_apart_from_failures():
    stats = load.Stats()
    stats.record("passage", 0.002, {"ok": True})
    stats.record("masks", 0.004, {"ok": False, "error": {"code": "rejected", "reason": "limit_reached"}})
    stats.record("passage", 0.010, {"ok": False, "error": {"code": "unavailable"}})
    stats.record("passage", 10.0, None, "TimeoutError")
    stats.sent, stats.seconds = 4, 2.0
    out = stats.summary(2.0, 2.0, 7, "r")
    assert out["ok"] == 1 and out["rejected"] == {"masks: rejected/limit_reached": 1}
    assert out["errors"] == {"passage: unavailable": 1, "passage: TimeoutError": 1}
    assert out["kinds"]["passage"]["n"] == 3 and out["kinds"]["passage"]["max_ms"] == 10000.0
    assert out["completed"] == 4 and out["rate_achieved"] == 2.0
    json.dumps(out)  # the last line of `cordon load` is this, as JSON
    assert "cordon load: target 2/s" in load.render(out)


# -- client ----------------------------------------------------------------------------------------


def test_calls_name_their_subjects():
    assert cmd("registry", "register_compound", name="x").subject == "cordon.cmd.registry.register_compound"
    assert cmd("registry", "register_compound", name="x").body == {"name": "x"}
    assert qry("community", community="a.b.c").subject == "cordon.qry.community"


def test_settled_means_every_outbox_empty_and_every_consumer_caught_up():
    calm = {"ok": True, "outbox_depth": 0, "consumers": {"a": {"lag": 0}, "b": {"lag": 0}}}
    assert settled([calm, {"ok": True, "outbox_depth": 0, "consumers": {}}])
    assert not settled([])
    assert not settled([calm, {**calm, "outbox_depth": 3}])
    assert not settled([{**calm, "consumers": {"a": {"lag": 2}}}])
    assert not settled([{**calm, "consumers": {"a": {"lag": None}}}])  # unknown is not caught up
    assert not settled([{"ok": False, "error": "PostgreSQL down"}])


def test_a_tally_counts_refusals_by_command_and_reason():
    tally = Tally()
    tally.add(cmd("s", "a"), {"ok": True})
    tally.add(cmd("s", "a"), {"ok": False, "error": {"code": "rejected", "reason": "limit_reached"}})
    tally.add(cmd("s", "b"), {"ok": False, "error": {"code": "not_found"}})
    assert (tally.sent, tally.ok) == (3, 1)
    assert tally.errors == {"a: rejected/limit_reached": 1, "b: not_found": 1}


# -- tables ----------------------------------------------------------------------------------------


def test_tables_align_numbers_right_and_count_wide_characters_twice():
    assert tables.width("南宫") == 4 and tables.width("ab") == 2
    text = tables.table(("figure", "南宫居民区", "n"), [("residents", 12835, 3), ("households", 5400, 10)])
    lines = text.splitlines()
    assert lines[2].endswith("12,835   3") and lines[3].endswith("5,400  10")
    assert len({tables.width(line) for line in lines}) == 1  # every row as wide as the header


BOARD = {
    "ok": True, "community": "changning.chengjiaqiao.nangong", "on": "2020-02-17", "residents": 12835,
    "households": 5400, "arrivals": {"last_14_days": 287, "pending_verification": 5},
    "in_quarantine": {"home": 168, "centralized": 2, "monitoring": 4, "hospital": 1, "total": 175},
    "sealed_areas": {"compounds": 0, "buildings": 1}, "active_passes": 5400,
    "passages_today": {"in": 4304, "out": 4304, "denied": 50}, "fevers_today": 5, "checkins_missed_today": 5,
    "positive_results_today": 0, "open_requests": 1, "deliveries_today": 316, "welfare_checks_open": 1,
    "households_on_daily_supply": 175, "screening_results_pending": 0, "stock": {"masks": 870, "vegetable-pack": 20},
    "group_orders_open": 1, "group_orders_delivered_today": 2,
    "volunteer_hours_today": {"nangong-cadres": 152.0, "nangong-party-branch": 160.25},
    "calls_today": {"made": 12, "reached": 9}, "tip_offs": {"open": 2, "followed_up_today": 1},
}


def test_the_board_reads_as_staff_read_it():
    text = tables.board(BOARD, "南宫居民区")
    assert "the committee's board for 2020-02-17" in text
    assert "home 168 · centralized 2 · monitoring 4 · hospital 1" in text
    assert "reached 9" in text and "followed up today 1" in text
    assert "in 4,304 · out 4,304 · denied 50" in text and "masks 870 · vegetable-pack 20" in text
    assert "delivered to a gate today 2" in text and "nangong-cadres 152 · nangong-party-branch 160.25" in text


def test_the_report_has_a_column_per_committee_and_the_street():
    reply = {"scope": "changning.chengjiaqiao", "on": "2020-02-17", "communities": 2,
             "figures": {"residents": 30, "stock.masks": 5},
             "detail": {"columns": ["residents", "stock.masks"],
                        "rows": [["changning.chengjiaqiao.nangong", 20, 5],
                                 ["changning.chengjiaqiao.xinjing", 10, 0]]}}
    text = tables.report(reply, {"changning.chengjiaqiao.nangong": "南宫居民区"})
    header, _, residents, masks = text.splitlines()[1:]
    assert "南宫居民区" in header and "xinjing" in header and header.rstrip().endswith("street")
    assert residents.split()[-3:] == ["20", "10", "30"] and masks.startswith("  stock: masks")


# -- the public API only -----------------------------------------------------------------------------

# shared.idcard: the ID check digit is public knowledge (GB 11643), not a service internal; shared.log:
# where the demo's own log goes (a file, not its tables), no service's.
ALLOWED = ("services.demo", "shared.embedded", "shared.auth", "shared.config", "shared.idcard", "shared.log",
           "services.supervisor", "services.cli", "nats")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_the_demo_imports_no_service_internals_and_no_contracts():
    for path in DEMO.glob("*.py"):
        for name in imports(path):
            if name.startswith(("services", "shared", "nats")):
                assert name.startswith(ALLOWED), f"{path.name} imports {name}"
            # Only the module that starts a Cordon touches the start-up helpers.
            if name.startswith(("shared.embedded", "shared.auth", "services.supervisor", "services.cli")):
                assert path.name == "system.py", f"{path.name} imports {name}"


# -- cordon load --committees -----------------------------------------------------------------------


def test_a_city_of_committees_is_laid_out_as_a_tree_of_streets_and_districts():
    from services.demo import city
    from shared.subjects import check_community

    names = [city.community(i) for i in range(6000)]
    for name in names[:60] + names[-5:]:
        check_community(name)
    assert len(set(names)) == 6000
    assert names[0] == "load-d01.s0001.c01" and names[27] == "load-d01.s0001.c28" and names[28] == "load-d02.s0002.c01"
    assert len({n.split(".")[0] for n in names}) == city.DISTRICTS
    sites = city.sites(5, 3, households=4)
    assert [s.community for s in sites] == names[:3]
    assert len({s.compound for s in sites}) == 3 and not set(sites[0].households) & set(sites[1].households)


def test_committees_set_the_rate_and_time_is_compressed_as_told():
    from services.demo import city

    plan = city.Plan.of(6000, duration=60)
    assert plan.speed == 1 and round(plan.rate, 1) == round(6000 * 15000 / 86400, 1) == 1041.7
    assert city.committees_for(plan.rate) == 6000
    sixty = city.Plan.of(10, duration=600, days=60)
    assert sixty.speed == 60 * 86400 / 600 and sixty.simulated == timedelta(days=60)
    assert round(sixty.rate, 1) == round(10 * 15000 / 86400 * 8640, 1)
    assert "time compressed 8,640×" in sixty.describe()
    for bad in (dict(committees=0, duration=1), dict(committees=1, duration=1, speed=2, days=1),
                dict(committees=1, duration=1, days=0), dict(committees=1, duration=1, speed=-1)):
        with pytest.raises(ValueError):
            city.Plan.of(**bad)


def test_simulated_time_ends_now_and_never_runs_ahead_of_it():
    from services.demo import city

    wall, mono = [datetime(2020, 3, 1, 12, 0, tzinfo=load.CST)], [100.0]
    plan = city.Plan.of(10, duration=600, days=60)
    clock = plan.clock(lambda: wall[0], lambda: mono[0])
    assert clock() == wall[0] - timedelta(days=60)
    mono[0] += 300  # half way through the run: half the days
    assert clock() == wall[0] - timedelta(days=30)
    mono[0] += 400  # the run overran: simulated time stops at now
    assert clock() == wall[0]


def test_the_generator_spreads_a_citys_commands_over_its_committees():
    from services.demo import city

    sites = city.sites(5, 4, households=10)
    for s in sites:
        s.passes = {h: f"N{i:09d}" for i, h in enumerate(s.households)}
    gen = load.Generator(sites, load.DEFAULT_MIX, 5, "r")
    drawn = [gen.next(NOW)[1] for _ in range(2000)]
    by_community = Counter(c.body["community"] for c in drawn if "community" in c.body)
    assert set(by_community) == {s.community for s in sites}
    assert min(by_community.values()) > 0.2 * sum(by_community.values()) / 4
    for c in drawn:  # each command names targets of the committee it is sent to
        if c.body.get("compound"):
            site = next(s for s in sites if s.community == c.body["community"])
            assert c.body["compound"] == site.compound
        if "resident" in c.body and c.name == "check_passage":
            assert c.body["resident"].startswith(next(s.compound for s in sites if s.community == c.body["community"]))


def test_the_load_command_refuses_a_mixed_form_before_starting_anything(capsys):
    import argparse as ap

    from services.demo import cli

    parser = ap.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="cmd"))
    for argv, says in ((["--duration", "1"], "give --rate R, or --committees N"),
                       (["--rate", "5", "--committees", "3", "--duration", "1"], "not both"),
                       (["--rate", "5", "--speed", "3", "--duration", "1"], "go with --committees"),
                       (["--committees", "3", "--speed", "2", "--days", "1", "--duration", "1"], "not both"),
                       (["--committees", "3", "--mix", "checkin", "--duration", "1"], "quarantine kinds")):
        args = parser.parse_args(["load", *argv])
        assert args.run(args, None) == 2
        assert says in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["load", "--rate", "5", "--duration", "1", "--warmup", "-1"])
    assert "--warmup: must be 0 or more" in capsys.readouterr().err
