"""The committee's board and the daily report: query inputs, and figures as the board shows them.

Pure: the SQL side hands over, per metric, three sums of its per-day deltas (on the day, up to the
day, over the 14 days ending on the day); this module picks the one that metric means and shapes
the board (nested JSON), the report (flat columns) and CSV.
"""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Iterable

from services.views.rules import FLOWS, LEVELS, OUTINGS, STOCK, VOLUNTEER, WINDOW_DAYS
from shared.contracts import queries
from shared.contracts.queries import CommunityQuery, RollupQuery, TimelineQuery
from shared.errors import Invalid
from shared.subjects import check_community, check_scope, check_slug

#: The report's columns, in order; ``stock.<item>`` columns follow, sorted by item, then the
#: volunteers' minutes of the day per team (``volunteer_minutes.<team>``).
COLUMNS = (
    "residents", "households", "arrivals_14d", "arrivals_pending",
    "quarantine_home", "quarantine_centralized", "quarantine_monitoring", "quarantine_hospital",
    "sealed_compounds", "sealed_buildings", "passes_active",
    "passages_in", "passages_out", "passages_denied", "fevers", "checkins_missed", "positive_results",
    "requests_open", "deliveries", "welfare_checks_open", "daily_supply_households",
    "group_orders_open", "group_orders_delivered",
    "results_pending",
    "vehicles_checked", "vehicles_denied", "parcels_dropped", "parcels_collected", "parcels_waiting", *OUTINGS,
    "calls", "calls_reached", "tip_offs_open", "tip_offs_followed_up",
)
_EARLIEST = date.min + timedelta(days=WINDOW_DAYS)


def parse(name: str, payload: bytes):
    """Decode a query strictly (its struct in :mod:`shared.contracts.queries`); every failure is
    Invalid naming the field."""
    query = queries.decode(name, payload)
    match query:
        case CommunityQuery():
            check_community(query.community)
        case RollupQuery():
            try:
                check_scope(query.scope)
            except Invalid:
                raise Invalid(f"scope {query.scope!r} is not 'city' or a path prefix of slugs: a district "
                              "(changning), district.street (changning.chengjiaqiao) or a community",
                              field="scope") from None
        case TimelineQuery():
            check_slug(query.resident, "resident")
    if getattr(query, "on", None) is not None and query.on < _EARLIEST:
        raise Invalid("on is too early a date", field="on")
    return query


Sums = tuple[int, int, int]  # (on the day, up to the day, over the window ending on the day)


def flat(sums: dict[str, Sums]) -> dict[str, int]:
    """The report's figures from each metric's sums: levels up to the day, flows on the day."""
    out = dict.fromkeys(COLUMNS, 0)
    for metric, (on_day, to_date, window) in sums.items():
        if metric in LEVELS or metric.startswith(STOCK):
            out[metric] = to_date
        elif metric in FLOWS or metric.startswith(VOLUNTEER):
            out[metric] = on_day
        elif metric == "arrivals":
            out["arrivals_14d"] = window
    return out


def add(total: dict[str, int], figures: dict[str, int]) -> dict[str, int]:
    for key, n in figures.items():
        total[key] = total.get(key, 0) + n
    return total


def stock(figures: dict[str, int]) -> dict[str, int]:
    return {k[len(STOCK):]: n for k, n in sorted(figures.items()) if k.startswith(STOCK)}


def volunteer_hours(figures: dict[str, int]) -> dict[str, float]:
    """Team -> hours on the day, from the minutes the figures count (teams with none left out)."""
    return {k[len(VOLUNTEER):]: round(n / 60, 2) for k, n in sorted(figures.items())
            if k.startswith(VOLUNTEER) and n}


def nest(f: dict[str, int]) -> dict:
    """The board as staff read it (CONTRACT.md, queries): grouped, with today's counts."""
    kinds = ("home", "centralized", "monitoring", "hospital")
    in_quarantine = {k: f[f"quarantine_{k}"] for k in kinds}
    in_quarantine["total"] = sum(in_quarantine.values())
    return {
        "residents": f["residents"],
        "households": f["households"],
        "arrivals": {"last_14_days": f["arrivals_14d"], "pending_verification": f["arrivals_pending"]},
        "in_quarantine": in_quarantine,
        "sealed_areas": {"compounds": f["sealed_compounds"], "buildings": f["sealed_buildings"]},
        "active_passes": f["passes_active"],
        "passages_today": {"in": f["passages_in"], "out": f["passages_out"], "denied": f["passages_denied"]},
        "fevers_today": f["fevers"],
        "checkins_missed_today": f["checkins_missed"],
        "positive_results_today": f["positive_results"],
        "open_requests": f["requests_open"],
        "deliveries_today": f["deliveries"],
        "welfare_checks_open": f["welfare_checks_open"],
        "households_on_daily_supply": f["daily_supply_households"],
        "screening_results_pending": f["results_pending"],
        "stock": stock(f),
        "group_orders_open": f["group_orders_open"],
        "group_orders_delivered_today": f["group_orders_delivered"],
        "volunteer_hours_today": volunteer_hours(f),
        "vehicles_today": {"checked": f["vehicles_checked"], "denied": f["vehicles_denied"]},
        "parcels": {"dropped_today": f["parcels_dropped"], "collected_today": f["parcels_collected"],
                    "waiting": f["parcels_waiting"]},
        "outings_today": {k[len("outings_"):]: f[k] for k in OUTINGS},
        "calls_today": {"made": f["calls"], "reached": f["calls_reached"]},
        "tip_offs": {"open": f["tip_offs_open"], "followed_up_today": f["tip_offs_followed_up"]},
    }


def columns(rows: Iterable[dict[str, int]]) -> list[str]:
    rows = list(rows)
    items = sorted({k for row in rows for k in row if k.startswith(STOCK)})
    teams = sorted({k for row in rows for k in row if k.startswith(VOLUNTEER)})
    return [*COLUMNS, *items, *teams]


def to_csv(report: dict) -> str:
    """The rollup reply with ``detail`` as CSV: one row per community, then the total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    detail = report["detail"]
    writer.writerow(["community", *detail["columns"]])
    writer.writerows(detail["rows"])
    total = report["figures"]
    writer.writerow([f"total:{report['scope']}", *(total.get(c, 0) for c in detail["columns"])])
    return out.getvalue()
