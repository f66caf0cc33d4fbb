"""The board as HTML: Chinese labels with the English beside them, every value escaped. Pure.

No template engine: a page of a few sections reads as well in f-strings, and :func:`esc` on every
value from outside is the one rule (the fragment goes into the page with ``innerHTML``). It also
folds line breaks, so no text can break an SSE message's lines either.
"""
from __future__ import annotations

import html
from datetime import datetime, tzinfo

from services.demo.street import PLAN, STREET
from services.demo.tables import label as english_label
from services.registry.commands import MIN_PURPOSE
from services.views.board import COLUMNS
from shared.wire import MAX_NOTE

#: The committees' own names, where Cordon knows them (the demo's street).
COMMITTEES = {f"{STREET}.{c.slug}": c.name for c in PLAN}

#: The board's figures, in the demo board's order: key of the ``community`` reply -> (中文, English).
FIGURES = {
    "residents": ("居民", "residents"),
    "households": ("户数", "households"),
    "arrivals": ("近14天来沪人员", "arrivals, last 14 days"),
    "in_quarantine": ("隔离管控", "in quarantine"),
    "sealed_areas": ("封控区域", "sealed areas"),
    "active_passes": ("有效出入证", "active passes"),
    "passages_today": ("今日进出", "passages today"),
    "fevers_today": ("今日发热", "fevers today"),
    "checkins_missed_today": ("今日未打卡", "check-ins missed today"),
    "open_requests": ("待办物资需求", "open supply requests"),
    "deliveries_today": ("今日配送", "deliveries today"),
    "welfare_checks_open": ("待上门探视", "welfare checks open"),
    "households_on_daily_supply": ("每日供应户", "households on daily food supply"),
    "screening_results_pending": ("待出核酸结果", "screening results pending"),
    "stock": ("库存", "stock on hand"),
    "group_orders_open": ("团购未发完", "group orders open"),
    "group_orders_delivered_today": ("今日团购到门岗", "group orders delivered today"),
    "volunteer_hours_today": ("今日志愿者时长", "volunteer hours today"),
    "vehicles_today": ("今日车辆", "vehicles today"),
    "parcels": ("快递外卖待取", "parcels waiting at the gates"),
    "outings_today": ("今日外出去向", "outings by destination today"),
    "calls_today": ("今日电话排查", "screening calls today"),
    "tip_offs": ("待核查举报", "tip-offs open"),
}
#: The street report's rows (``rollup`` columns) in Chinese; the English is the demo's.
REPORT = {
    "residents": "居民", "households": "户数", "arrivals_14d": "近14天来沪人员", "arrivals_pending": "待核验",
    "quarantine_home": "居家隔离", "quarantine_centralized": "集中隔离", "quarantine_monitoring": "健康监测",
    "quarantine_hospital": "住院", "sealed_compounds": "封控小区", "sealed_buildings": "封控楼栋",
    "passes_active": "有效出入证", "passages_in": "进入", "passages_out": "外出", "passages_denied": "拒绝通行",
    "fevers": "门岗发热", "checkins_missed": "未打卡", "positive_results": "阳性结果",
    "requests_open": "待办物资需求", "deliveries": "配送完成", "welfare_checks_open": "待上门探视",
    "daily_supply_households": "每日供应户", "results_pending": "待出核酸结果",
    "group_orders_open": "团购未发完", "group_orders_delivered": "今日团购到门岗",
    "vehicles_checked": "车辆检查", "vehicles_denied": "车辆拒绝", "parcels_dropped": "快递外卖放置",
    "parcels_collected": "快递外卖领取", "parcels_waiting": "快递外卖待取", "outings_work": "外出上班",
    "outings_shopping": "外出购物", "outings_medical": "外出就医", "outings_family": "外出探亲",
    "outings_other": "外出其他",
    "daily_supply_households": "每日供应户",
    "calls": "电话排查", "calls_reached": "电话接通", "tip_offs_open": "待核查举报", "tip_offs_followed_up": "举报已核查",
}
REASONS = {
    "gate_closed": "大门关闭", "compound_sealed": "小区封控", "building_sealed": "楼栋封控",
    "under_quarantine": "隔离中", "fever": "发热", "unknown_resident": "非本小区居民",
    "no_valid_pass": "无有效出入证", "visitors_not_admitted": "暂停访客", "awaiting_result": "待核酸结果",
}
DIRECTIONS = {"in": "进", "out": "出"}
KINDS = {"food": "食品", "medicine": "药品", "device_help": "设备帮助", "masks": "口罩", "other": "其他"}
STATUSES = {"open": "待分配", "assigned": "配送中"}
NEEDS = {"quarantined": "隔离", "sealed": "封控", "elderly_alone": "独居老人", "limited_mobility": "行动不便",
         "medical_device": "医疗设备", "chronic_illness": "慢性病"}
#: The lists under the figures: name -> (中文, English, what an empty list says).
LISTS = {
    "denied": ("今日拒绝通行", "turned back at the gates today", "none today"),
    "passed": ("今日通行", "let through today", "none today"),
    "welfare": ("待上门探视", "open welfare checks", "none open"),
    "missed": ("今日未打卡", "check-ins missed today", "none today"),
    "requests": ("待办物资需求", "open supply requests", "none open"),
}


def esc(value: object) -> str:
    """Escaped for HTML text and attribute values; line breaks folded to spaces."""
    return html.escape(str(value)).replace("\r", " ").replace("\n", " ")


def both(zh: str, en: str) -> str:
    return f'<span class="zh">{esc(zh)}</span> <span class="en">{esc(en)}</span>'


def num(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else esc(n)


def committee(community: str) -> str:
    return COMMITTEES.get(community, community.rsplit(".", 1)[-1])


# -- the committee's board ------------------------------------------------------------------------


def community_fragment(community: str, data: dict[str, dict], zone: tzinfo) -> str:
    """The part of the page that the live stream replaces: figures, then the lists. People show
    by their masked names (王*伟), each with a reveal form: nothing personal is in the fragment."""
    board = data["board"]
    if not board.get("ok"):
        return f'<section class="figures">{refused(board)}</section>'
    people = People.of(data.get("names") or {})
    lists = "".join(_list(name, data[name], zone, people) for name in LISTS)
    return (f'<p class="day">{both("日期", "day")} <time>{esc(board["on"])}</time></p>'
            f'<section class="figures">{"".join(_figure(k, board) for k in FIGURES)}</section>'
            f'<div class="lists">{lists}</div>')


class People:
    """The masked names ``registry.names`` answered: by resident, and by household (its residents)."""

    def __init__(self, residents: dict[str, str], households: dict[str, list[str]]) -> None:
        self.residents, self.households = residents, households

    @classmethod
    def of(cls, reply: dict) -> "People":
        residents: dict[str, str] = {}
        households: dict[str, list[str]] = {}
        for row in reply.get("residents") or [] if reply.get("ok") else []:
            residents[row["resident"]] = row["display_name"]
            households.setdefault(row["household"], []).append(row["display_name"])
        return cls(residents, households)

    def resident(self, resident: str) -> str:
        """The resident's masked name and a reveal form (the short id when no name is known)."""
        name = self.residents.get(resident)
        shown = f'<span class="who" title="{esc(resident)}">{esc(name)}</span>' if name else short(resident)
        return shown + reveal("resident", resident)

    def household(self, household: str) -> str:
        """The household's residents' masked names and a reveal form for the household."""
        names = self.households.get(household)
        shown = (f'<span class="who" title="{esc(household)}">{esc(" · ".join(names))}</span>' if names
                 else short(household))
        return shown + reveal("household", household)


def reveal(kind: str, subject: str) -> str:
    """The reveal control: a purpose and a button, posted to ``/board/reveal`` (a plain form: it
    works without JavaScript; board.js shows the answer inline). ``<details>`` keeps it one word
    until opened."""
    return (f'<details class="reveal"><summary>{both("查看", "reveal")}</summary>'
            f'<form method="post" action="/board/reveal" class="reveal">'
            f'<input type="hidden" name="{kind}" value="{esc(subject)}">'
            f'<label>{both("事由", "purpose")} <input name="purpose" required minlength="{MIN_PURPOSE}" '
            f'maxlength="{MAX_NOTE}" autocomplete="off"></label> '
            f'<button type="submit">{both("查看", "reveal")}</button></form>'
            '<div class="revealed" aria-live="polite"></div></details>')


def _figure(key: str, b: dict) -> str:
    zh, en = FIGURES[key]
    value, detail = _value(key, b)
    return (f'<div class="figure" data-figure="{key}"><div class="label">{both(zh, en)}</div>'
            f'<div class="n">{value}</div><div class="detail">{detail}</div></div>')


def _value(key: str, b: dict) -> tuple[str, str]:
    if key == "arrivals":
        a = b["arrivals"]
        return num(a["last_14_days"]), _parts(("待核验", "pending verification", a["pending_verification"]))
    if key == "in_quarantine":
        q = b["in_quarantine"]
        return num(q["total"]), _parts(("居家", "home", q["home"]), ("集中", "centralized", q["centralized"]),
                                       ("监测", "monitoring", q["monitoring"]), ("住院", "hospital", q["hospital"]))
    if key == "sealed_areas":
        s = b["sealed_areas"]
        return num(s["compounds"] + s["buildings"]), _parts(("小区", "compounds", s["compounds"]),
                                                            ("楼栋", "buildings", s["buildings"]))
    if key == "passages_today":
        p = b["passages_today"]
        return num(p["in"] + p["out"] + p["denied"]), _parts(("进", "in", p["in"]), ("出", "out", p["out"]),
                                                             ("拒", "denied", p["denied"]))
    if key == "vehicles_today":
        v = b["vehicles_today"]
        return num(v["checked"]), _parts(("拒", "denied", v["denied"]))
    if key == "parcels":
        p = b["parcels"]
        return num(p["waiting"]), _parts(("今日放置", "dropped today", p["dropped_today"]),
                                         ("今日领取", "collected today", p["collected_today"]))
    if key == "outings_today":
        o = b["outings_today"]
        return num(sum(o.values())), " · ".join(f"{esc(k)} <b>{num(n)}</b>" for k, n in o.items())
    if key == "calls_today":
        c = b["calls_today"]
        return num(c["made"]), _parts(("接通", "reached", c["reached"]))
    if key == "tip_offs":
        t = b["tip_offs"]
        return num(t["open"]), _parts(("今日已核查", "followed up today", t["followed_up_today"]))
    if key == "stock":  # items do not add up: each is its own figure
        items = " · ".join(f"{esc(item)} <b>{num(n)}</b>" for item, n in b["stock"].items())
        return "", items or esc("none")
    if key == "volunteer_hours_today":  # per team
        teams = b.get(key, {})
        return num(round(sum(teams.values()), 2)), " · ".join(f"{esc(t)} <b>{num(h)}</b>" for t, h in teams.items())
    return num(b[key]), ""


def _parts(*parts: tuple[str, str, int]) -> str:
    return " · ".join(f'{both(zh, en)} <b>{num(n)}</b>' for zh, en, n in parts)


def _list(name: str, reply: dict, zone: tzinfo, people: People) -> str:
    zh, en, empty = LISTS[name]
    if not reply.get("ok"):
        body = refused(reply)
    else:
        items = reply.get("rows", reply.get("checks", reply.get("requests", [])))
        rows = [ROW[name](item, zone, people) for item in items]
        body = f'<ul>{"".join(rows)}</ul>' if rows else f'<p class="empty">{esc(empty)}</p>'
    return f'<section class="list" id="{name}"><h2>{both(zh, en)}</h2>{body}</section>'


def _clock(value: object, zone: tzinfo) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone(zone).strftime("%H:%M:%S")
    except ValueError:
        return esc(value)


def short(id_: object) -> str:
    """An opaque id, shortened for the eye (the full id is in the element's title)."""
    text = str(id_ or "")
    return f'<abbr title="{esc(text)}">{esc(text[:8])}</abbr>' if len(text) > 10 else esc(text)


def _passage(row: dict, zone: tzinfo, people: People) -> str:
    d = row["envelope"]["data"]
    reason = d.get("reason")
    why = f' <span class="reason" data-reason="{esc(reason)}">{both(REASONS.get(reason, reason), reason)}</span>' \
        if reason else ""
    return (f'<li data-seq="{esc(row["stream_seq"])}"><time>{_clock(row["occurred_at"], zone)}</time> '
            f'{esc(d["compound"])} · {esc(d["gate"])} {esc(DIRECTIONS.get(d["direction"], d["direction"]))}'
            f'{why} <span class="temp">{esc(d["temperature_c"])} °C</span>{_passer(d, people)}</li>')


def _passer(d: dict, people: People) -> str:
    """Who passed: a resident, a household (by its pass), or a visitor (masked by the checkpoint:
    their contact is not the registry's to reveal)."""
    if d.get("resident"):
        return " " + people.resident(d["resident"])
    if d.get("household"):
        return " " + people.household(d["household"])
    if d.get("visitor"):
        return f' {both("访客", "visitor")} <span class="who">{esc(d["visitor"])}</span>'
    return ""


def _missed(row: dict, zone: tzinfo, people: People) -> str:
    d = row["envelope"]["data"]
    return (f'<li data-seq="{esc(row["stream_seq"])}"><time>{_clock(row["occurred_at"], zone)}</time> '
            f'{both("居民", "resident")} {people.resident(d["resident"])} · {both("应报", "due")} {esc(d["on"])}</li>')


def _welfare(check: dict, zone: tzinfo, people: People) -> str:
    needs = " ".join(f'{both(NEEDS.get(v, v), v)}' for v in check.get("vulnerabilities") or [])
    return (f'<li><time>{_clock(check["raised_at"], zone)}</time> {esc(check["compound"])} · '
            f'<span class="needs">{needs}</span> {people.household(check["household"])}</li>')


def _request(r: dict, zone: tzinfo, people: People) -> str:
    items = ", ".join(f'{i["item"]} ×{i["qty"]}' for i in r["items"])
    missing = ", ".join(f'{m["item"]} {m["missing"]}' for m in r.get("missing") or [])
    short_of = f' · <span class="missing">{both("缺", "missing")} {esc(missing)}</span>' if missing else ""
    return (f'<li><span class="kind">{both(KINDS.get(r["kind"], r["kind"]), r["kind"])}</span> '
            f'{esc(items)} <span class="status">{both(STATUSES.get(r["status"], r["status"]), r["status"])}</span>'
            f'{short_of} {people.household(r["household"])}</li>')


ROW = {"denied": _passage, "passed": _passage, "missed": _missed, "welfare": _welfare, "requests": _request}


def refused(reply: dict) -> str:
    error = reply.get("error") or {}
    return (f'<p class="refused">{both("暂无数据", "not available")}: {esc(error.get("code", "?"))} '
            f'— {esc(error.get("message", ""))}</p>')


# -- a reveal: one record's names and phones, recorded ------------------------------------------------


def revealed(reply: dict) -> str:
    """What ``registry.contact`` answered, for the one page that asked: the record's names, phones
    and address, and that the read is recorded (its PersonalDataViewed); or the refusal."""
    if not reply.get("ok"):
        return f'<div class="contact">{refused(reply)}</div>'
    contacts = "".join(_contact(c) for c in reply.get("contacts") or [])
    return (f'<div class="contact" data-viewed="{esc(reply["viewed"])}"><ul>{contacts}</ul>'
            f'<p class="recorded">{both("已记录查看", "this read is recorded")}: PersonalDataViewed '
            f'{short(reply["viewed"])} · {both("事由", "purpose")} {esc(reply["purpose"])}</p></div>')


def _contact(c: dict) -> str:
    if c.get("erased"):
        return f'<li>{short(c["resident"])} {both("已删除", "erased")}</li>'
    phone = f' · <a href="tel:{esc(c["phone"])}">{esc(c["phone"])}</a>' if c.get("phone") else ""
    address = f' · {esc(c["address"])}' if c.get("address") else ""
    born = f' · {both("出生", "born")} {esc(c["birth_year"])}' if c.get("birth_year") else ""
    return f'<li><b class="name">{esc(c["name"])}</b>{phone}{address}{born}</li>'


def reveal_page(fragment: str) -> str:
    """The reveal's answer as the main part of a page of its own (the form posted without
    JavaScript), with the way back to the board."""
    return (f'<section class="list">{fragment}<p><a href="/">{both("返回看板", "back to the board")}</a></p>'
            '</section>')


# -- the street's report ----------------------------------------------------------------------------


def street_fragment(data: dict[str, dict]) -> str:
    """An officer's report: a row per figure, a column per committee and the scope's total."""
    r = data["report"]
    if not r.get("ok"):
        return f'<section class="report">{refused(r)}</section>'
    detail = r["detail"]
    names = [row[0] for row in detail["rows"]]
    head = "".join(f'<th scope="col" data-community="{esc(c)}">{esc(committee(c))}</th>' for c in names)
    rows = []
    for i, key in enumerate(detail["columns"]):
        cells = "".join(f'<td>{num(row[i + 1])}</td>' for row in detail["rows"])
        rows.append(f'<tr data-figure="{esc(key)}"><th scope="row">{both(_report_zh(key), english_label(key))}</th>'
                    f'{cells}<td class="total">{num(r["figures"].get(key, 0))}</td></tr>')
    return (f'<p class="day">{both("日期", "day")} <time>{esc(r["on"])}</time> · {num(r["communities"])} '
            f'{both("个居委", "committees")}</p>'
            f'<div class="scroll"><table class="report"><thead><tr><th scope="col">{both("指标", "figure")}</th>'
            f'{head}<th scope="col">{both("合计", "total")}</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _report_zh(key: str) -> str:
    if key.startswith("stock."):
        return f"库存：{key[len('stock.'):]}"
    if key.startswith("volunteer_minutes."):
        return f"志愿者分钟：{key[len('volunteer_minutes.'):]}"
    return REPORT.get(key, key)


assert set(REPORT) == set(COLUMNS), "every column of the report has a Chinese label"


# -- pages ----------------------------------------------------------------------------------------------

_HEAD = ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
         '<meta name="viewport" content="width=device-width, initial-scale=1">'
         '<link rel="stylesheet" href="/static/board.css"><title>{title}</title></head>')


def page(title: str, who: str, fragment: str, live: bool) -> str:
    """The board's page: a header, the fragment the live stream replaces, the few lines of JS."""
    script = '<script src="/static/board.js" defer></script>' if live else ""
    return (_HEAD.format(title=esc(title)) + '<body><header>'
            f'<h1>{esc(title)}</h1><p class="who">{esc(who)} '
            f'<span id="live" class="live" aria-live="polite">{both("静态", "not live")}</span></p>'
            '<form method="post" action="/logout"><button type="submit">'
            f'{both("退出", "log out")}</button></form></header>'
            f'<main id="board">{fragment}</main>{script}</body></html>')


def login_page(message: str | None = None) -> str:
    note = f'<p class="refused" role="alert">{esc(message)}</p>' if message else ""
    return (_HEAD.format(title="Cordon 登录 log in") + '<body class="login"><main><h1>'
            f'{both("社区防控看板", "the committee’s live board")}</h1>{note}'
            '<form method="post" action="/login" enctype="multipart/form-data">'
            f'<label for="creds">{both("身份凭证文件", "your .creds file")}</label>'
            '<input id="creds" name="creds" type="file" accept=".creds" required>'
            f'<button type="submit">{both("登录", "log in")}</button></form>'
            f'<p class="hint">{both("由管理员以 cordon identity add 签发", "issued by the operators with cordon identity add")}'
            '</p></main></body></html>')


def no_board(role: str) -> str:
    return (f'<p class="refused">{both("此身份没有看板", "no board for this identity")}: '
            f'{esc(role)} — the board is for committee staff and officers; use the HTTP API (/v1).</p>')
