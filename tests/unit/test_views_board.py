"""Query input, board shape, report CSV, message decoding and the rebuild progress bar: pure."""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from services.views import board, project
from shared.config import city_zone
from services.views.cli import ProgressBar
from shared import envelope
from shared.contracts.checkpoint import PassageAllowed, PassageAllowedV1
from shared.contracts.queries import CommunityQuery
from shared.errors import Invalid

C = "changning.chengjiaqiao.nangong"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def q(name: str, **fields):
    return board.parse(name, json.dumps(fields).encode())


# -- query input ---------------------------------------------------------------------------------


def test_a_board_query_takes_a_community_and_an_optional_day():
    assert q("community", community=C) == CommunityQuery(community=C)
    assert q("community", community=C, on="2020-02-17").on == date(2020, 2, 17)


@pytest.mark.parametrize("fields, field", [
    ({"community": "changning.chengjiaqiao"}, "community"),
    ({"community": "Changning.x.y"}, "community"),
    ({"community": C, "on": "2020-02-30"}, "on"),
    ({"community": C, "on": "17/02/2020"}, "on"),
    ({"community": C, "on": "2020-02-17T08:00:00+08:00"}, "on"),
    ({"community": C, "on": 20200217}, "on"),
    ({"community": C, "day": "2020-02-17"}, "day"),
    ({}, "community"),
])
def test_a_bad_board_query_is_invalid_and_names_the_field(fields, field):
    with pytest.raises(Invalid) as err:
        q("community", **fields)
    assert err.value.field == field


def test_a_bad_date_says_how_to_write_one():
    with pytest.raises(Invalid, match="YYYY-MM-DD"):
        q("community", community=C, on="2020-02-30")


@pytest.mark.parametrize("scope", ["city", "changning", "changning.chengjiaqiao", C])
def test_a_scope_is_the_city_or_any_prefix_of_the_tree(scope):
    assert q("rollup", scope=scope).scope == scope


@pytest.mark.parametrize("scope", ["", "changning..x", "a.b.c.d", "changning.*", "Changning", "chang ning"])
def test_a_malformed_scope_is_invalid_with_what_a_scope_looks_like(scope):
    with pytest.raises(Invalid, match="'city' or a path prefix") as err:
        q("rollup", scope=scope)
    assert err.value.field == "scope"


@pytest.mark.parametrize("payload", [b"", b"[]", b"not json", b'{"scope": 5}'])
def test_a_payload_that_is_not_a_query_object_is_invalid(payload):
    with pytest.raises(Invalid):
        board.parse("rollup", payload)


def test_a_timeline_query_checks_the_resident_id_and_the_limit():
    assert q("timeline", resident="r-1").limit == 1000
    with pytest.raises(Invalid) as err:
        q("timeline", resident="r 1")
    assert err.value.field == "resident"
    with pytest.raises(Invalid) as err:
        q("timeline", resident="r1", limit=0)
    assert err.value.field == "limit"


def test_a_day_too_early_for_a_14_day_window_is_invalid():
    with pytest.raises(Invalid):
        q("community", community=C, on="0001-01-05")


# -- figures -------------------------------------------------------------------------------------


def test_levels_count_up_to_the_day_flows_on_the_day_arrivals_over_the_window():
    sums = {"residents": (1, 120, 30), "passages_in": (40, 900, 400), "arrivals": (2, 50, 9),
            "stock.masks": (-10, 300, 0)}
    figures = board.flat(sums)
    assert figures["residents"] == 120
    assert figures["passages_in"] == 40
    assert figures["arrivals_14d"] == 9
    assert figures["stock.masks"] == 300
    assert figures["fevers"] == 0 and set(board.COLUMNS) <= set(figures)


def test_a_metric_no_board_knows_is_left_out():
    assert "from_the_future" not in board.flat({"from_the_future": (1, 1, 1)})


def test_the_board_groups_the_figures_as_committees_read_them():
    figures = board.flat({"quarantine_home": (0, 3, 0), "quarantine_hospital": (0, 1, 0),
                          "stock.masks": (0, 5, 0), "passages_denied": (2, 9, 9), "arrivals_pending": (0, 4, 0)})
    shown = board.nest(figures)
    assert shown["in_quarantine"] == {"home": 3, "centralized": 0, "monitoring": 0, "hospital": 1, "total": 4}
    assert shown["passages_today"] == {"in": 0, "out": 0, "denied": 2}
    assert shown["arrivals"] == {"last_14_days": 0, "pending_verification": 4}
    assert shown["stock"] == {"masks": 5}


def test_calls_and_tip_offs_show_today_and_what_is_still_open():
    shown = board.nest(board.flat({"calls": (5, 40, 20), "calls_reached": (3, 30, 15),
                                   "tip_offs_open": (1, 2, 2), "tip_offs_followed_up": (1, 6, 6)}))
    assert shown["calls_today"] == {"made": 5, "reached": 3}
    assert shown["tip_offs"] == {"open": 2, "followed_up_today": 1}


def test_adding_boards_adds_every_figure_and_every_stock_item():
    a = board.flat({"residents": (0, 2, 0), "stock.masks": (0, 5, 0)})
    b = board.flat({"residents": (0, 3, 0), "stock.heater": (0, 1, 0)})
    total = board.add(board.add(board.flat({}), a), b)
    assert total["residents"] == 5 and total["stock.masks"] == 5 and total["stock.heater"] == 1


def test_the_report_csv_has_a_row_per_community_and_the_total_last():
    a = board.flat({"residents": (0, 2, 0), "stock.masks": (0, 5, 0)})
    b = board.flat({"residents": (0, 3, 0)})
    cols = board.columns([a, b])
    report = {"scope": "changning", "figures": board.add(board.add(board.flat({}), a), b),
              "detail": {"columns": cols, "rows": [["c.s.a", *(a.get(k, 0) for k in cols)],
                                                   ["c.s.b", *(b.get(k, 0) for k in cols)]]}}
    rows = list(csv.reader(io.StringIO(board.to_csv(report))))
    assert rows[0][:3] == ["community", "residents", "households"] and rows[0][-1] == "stock.masks"
    assert [r[0] for r in rows[1:]] == ["c.s.a", "c.s.b", "total:changning"]
    assert rows[-1][1] == "5" and rows[-1][-1] == "5"


# -- decoding stream messages --------------------------------------------------------------------


def passage_envelope(at: datetime) -> bytes:
    event = PassageAllowed(community=C, passage="p1", compound="c1", gate="g1", direction="out",
                           temperature_c=36.5, resident="r1", checked_at=at, checked_by="staff:wang")
    return envelope.encode(envelope.wrap(event, stream_id="passage:p1", stream_version=1, occurred_at=at,
                                         actor="staff:wang", correlation_id="c"))


def test_a_message_decodes_to_its_ops_its_local_day_and_its_timeline_entry():
    at = datetime(2020, 2, 16, 16, 30, tzinfo=timezone.utc)  # 00:30 on the 17th in Shanghai
    item = project.decode(passage_envelope(at), 7, SHANGHAI)
    assert (item.seq, item.type, item.community, item.day) == (7, "PassageAllowed", C, date(2020, 2, 17))
    assert item.resident == "r1" and item.actor == "staff:wang" and item.registered
    assert [op.metric for op in item.ops] == ["passages_out"]
    assert json.loads(item.data)["passage"] == "p1"


def test_a_schema_1_passage_decodes_as_schema_2_and_its_pass_number_stays_off_the_timeline():
    at = datetime(2020, 2, 17, 1, 0, tzinfo=timezone.utc)
    old = PassageAllowedV1(community=C, passage="p1", compound="c1", gate="g1", direction="out", temperature_c=36.5,
                           resident="r1", pass_="pass-1", number="7K3QDX9M2A", checked_at=at, checked_by="staff:wang")
    payload = envelope.encode(envelope.wrap(old, stream_id="passage:p1", stream_version=1, occurred_at=at,
                                            actor="staff:wang", correlation_id="c"))
    assert b"7K3QDX9M2A" in payload and b'"schema":1' in payload  # as recorded before the change
    item = project.decode(payload, 7, SHANGHAI)
    assert [op.metric for op in item.ops] == ["passages_out"] and item.type == "PassageAllowed"
    data = json.loads(item.data)
    assert "number" not in data and b"7K3QDX9M2A" not in item.data
    assert (data["pass"], data["pass_shown"], data["resident"]) == ("pass-1", True, "r1")
    current = project.decode(passage_envelope(at), 8, SHANGHAI)
    assert current.data == envelope.encode(envelope.decode(passage_envelope(at))[1])  # schema 2: as it came


def test_an_unknown_event_type_is_kept_for_the_timeline_but_changes_no_figure():
    body = {"event_id": str(uuid.uuid4()), "type": "VaccineGiven", "schema": 1, "stream_id": "x:1",
            "stream_version": 1, "community": C, "occurred_at": "2020-02-17T08:00:00+08:00",
            "recorded_at": "2020-02-17T08:00:00+08:00", "actor": "staff:a", "correlation_id": "c",
            "data": {"resident": "r1", "dose": 2}}
    item = project.decode(json.dumps(body).encode(), 3, SHANGHAI)
    assert not item.registered and item.ops == () and item.resident == "r1" and item.type == "VaccineGiven"


@pytest.mark.parametrize("payload", [
    b"not json",
    b'{"type": "PassageAllowed"}',
    passage_envelope(datetime(2020, 2, 17, tzinfo=timezone.utc)).replace(b'"direction":"out"', b'"direction":5'),
    passage_envelope(datetime(2020, 2, 17, tzinfo=timezone.utc)).replace(b'"event_id":"', b'"event_id":"x'),
])
def test_an_undecodable_message_is_marked_not_raised(payload):
    item = project.decode(payload, 9, SHANGHAI)
    assert item.event_id is None and item.seq == 9


def test_the_city_zone_comes_from_the_environment():
    assert city_zone({}) == SHANGHAI
    assert city_zone({"CORDON_TIMEZONE": "Europe/Paris"}) == ZoneInfo("Europe/Paris")
    with pytest.raises(SystemExit, match="CORDON_TIMEZONE"):
        city_zone({"CORDON_TIMEZONE": "Mars/Olympus"})


# -- progress bar --------------------------------------------------------------------------------


def test_the_progress_bar_shows_position_share_rate_and_eta():
    line = ProgressBar().render(250_000, 1_000_000, 10.0)
    assert "250,000/1,000,000" in line and "25.0%" in line and "25,000 ev/s" in line and "eta 30 s" in line
    assert line.count("#") == 7


def test_the_progress_bar_of_an_empty_stream_is_full():
    assert "100.0%" in ProgressBar().render(0, 0, 0.0)


def test_the_progress_bar_draws_at_most_every_tick_but_always_the_last():
    out = io.StringIO()
    bar = ProgressBar(stream=out, every=60)
    bar(1, 10, 1.0)
    bar(2, 10, 1.0)
    bar(10, 10, 2.0)
    assert out.getvalue().count("\r") == 2
