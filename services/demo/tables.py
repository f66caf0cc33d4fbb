"""The committee's board and the street's daily report as plain-text tables. Pure."""
from __future__ import annotations

import unicodedata
from typing import Iterable, Sequence

LABELS = {
    "residents": "residents",
    "households": "households",
    "arrivals_14d": "arrivals, last 14 days",
    "arrivals_pending": "arrivals pending verification",
    "quarantine_home": "in home quarantine",
    "quarantine_centralized": "in centralized quarantine",
    "quarantine_monitoring": "under health monitoring",
    "quarantine_hospital": "in hospital",
    "sealed_compounds": "sealed compounds",
    "sealed_buildings": "sealed buildings",
    "passes_active": "active passes",
    "passages_in": "passages in",
    "passages_out": "passages out",
    "passages_denied": "passages denied",
    "fevers": "fevers at the gates",
    "checkins_missed": "check-ins missed",
    "positive_results": "positive test results",
    "results_pending": "screening results pending",
    "requests_open": "open supply requests",
    "deliveries": "deliveries made",
    "welfare_checks_open": "welfare checks open",
    "daily_supply_households": "households on daily food supply",
    "group_orders_open": "group orders open",
    "group_orders_delivered": "group orders delivered",
    "calls": "screening calls made",
    "calls_reached": "screening calls reached",
    "tip_offs_open": "tip-offs open",
    "tip_offs_followed_up": "tip-offs followed up",
}


def label(key: str) -> str:
    if key.startswith("stock."):
        return f"stock: {key[len('stock.'):]}"
    if key.startswith("volunteer_minutes."):
        return f"volunteer minutes: {key[len('volunteer_minutes.'):]}"
    return LABELS.get(key, key.replace("_", " "))


def width(text: str) -> int:
    """Columns the text takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A ruled table: numbers right-aligned (with thousands separators), text left-aligned."""
    raw = [list(row) for row in rows]
    cells = [[_cell(v) for v in row] for row in raw]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] == "" for r in raw) and i > 0 for i in range(len(headers))]
    widths = [max([width(str(h)), *(width(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        out = []
        for v, w, right in zip(values, widths, numeric):
            pad = " " * (w - width(v))
            out.append(pad + v if right else v + pad)
        return ("  " + "  ".join(out)).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([line([str(h) for h in headers]), rule, *(line(r) for r in cells)])


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def board(reply: dict, title: str) -> str:
    """The committee's board, grouped as staff read it (CONTRACT.md: queries, ``community``)."""
    q = reply["in_quarantine"]
    p = reply["passages_today"]
    rows = [
        ("residents", reply["residents"], ""),
        ("households", reply["households"], ""),
        ("arrivals, last 14 days", reply["arrivals"]["last_14_days"],
         f"pending verification {reply['arrivals']['pending_verification']}"),
        ("in quarantine", q["total"], f"home {q['home']} · centralized {q['centralized']} · "
                                      f"monitoring {q['monitoring']} · hospital {q['hospital']}"),
        ("sealed areas", reply["sealed_areas"]["compounds"] + reply["sealed_areas"]["buildings"],
         f"compounds {reply['sealed_areas']['compounds']} · buildings {reply['sealed_areas']['buildings']}"),
        ("active passes", reply["active_passes"], ""),
        ("passages today", p["in"] + p["out"] + p["denied"],
         f"in {p['in']:,} · out {p['out']:,} · denied {p['denied']}"),
        ("fevers today", reply["fevers_today"], ""),
        ("check-ins missed today", reply["checkins_missed_today"], ""),
        ("open supply requests", reply["open_requests"], ""),
        ("deliveries today", reply["deliveries_today"], ""),
        ("welfare checks open", reply["welfare_checks_open"], ""),
        ("households on daily food supply", reply["households_on_daily_supply"], ""),
        ("screening results pending", reply["screening_results_pending"], ""),
        ("stock on hand", "", " · ".join(f"{k} {n:,}" for k, n in reply["stock"].items())),
        ("group orders open", reply["group_orders_open"],
         f"delivered to a gate today {reply['group_orders_delivered_today']}"),
        ("volunteer hours today", round(sum(reply["volunteer_hours_today"].values())),
         " · ".join(f"{k} {h:,g}" for k, h in reply["volunteer_hours_today"].items())),
        ("screening calls today", reply["calls_today"]["made"], f"reached {reply['calls_today']['reached']}"),
        ("tip-offs open", reply["tip_offs"]["open"], f"followed up today {reply['tip_offs']['followed_up_today']}"),
    ]
    head = f"{title}: the committee's board for {reply['on']}"
    return head + "\n" + table(("figure", "now", "detail"), rows)


def report(reply: dict, names: dict[str, str]) -> str:
    """The street's daily report (``rollup`` with ``detail``): a row per figure, a column per
    committee, and the street's total."""
    detail = reply["detail"]
    columns, rows = detail["columns"], detail["rows"]
    committees = [r[0] for r in rows]
    headers = ["figure", *(names.get(c, c.rsplit(".", 1)[-1]) for c in committees), "street"]
    body = []
    for i, key in enumerate(columns):
        body.append([label(key), *(r[i + 1] for r in rows), reply["figures"].get(key, 0)])
    head = f"{reply['scope']}: the street's daily report for {reply['on']} ({reply['communities']} committees)"
    return head + "\n" + table(headers, body)
