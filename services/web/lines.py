"""One line per event, for people reading a feed in a terminal (``cordon feed``):

    2026-11-30 09:14:02  PassageDenied         王*伟           in at nangong-1/g1, 38.5°C: fever

local time (the city's zone), type, masked subject, a short summary. Pure: an envelope as decoded
JSON in, text out.

The subject is a masked name the event carries (a resident's ``display_name``, a visitor's masked
name), else a short id of the resident, household or pass, else what the event is about (an
identity, a compound). Summaries name every service's events; a type not named here (a new
event) still prints, with its plain fields. Nothing secret is printed even when an event carries
it: pass and voucher numbers (``number``) never appear, nor the address and birth year that
schema-1 HouseholdRegistered and ResidentRegistered events (recorded before issue 16) carry, nor
the temperature and symptoms of a schema-1 check-in, nor where a schema-1 arrival came from.
"""
from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

TYPE_WIDTH = 21
SUBJECT_WIDTH = 14
#: Fields a line never shows, whatever the event: credentials, personal data old schemas carried,
#: and what the other columns say.
HIDDEN = {"number", "community", "public_key", "code", "address", "birth_year", "temperature_c", "symptoms",
          "origin"}


def line(envelope: dict, zone: ZoneInfo) -> str:
    """The envelope as one line: time, type, subject, summary."""
    data = envelope.get("data") if isinstance(envelope.get("data"), dict) else {}
    kind = str(envelope.get("type") or "?")
    return (f"{when(envelope.get('occurred_at'), zone)}  {pad(kind, TYPE_WIDTH)} "
            f"{pad(subject(data), SUBJECT_WIDTH)} {summary(kind, data)}").rstrip()


def when(value: Any, zone: ZoneInfo) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return pad(str(value), 19)
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def subject(data: dict) -> str:
    """Whom the event is about, masked: a masked name, else a short id."""
    for field in ("display_name", "visitor"):
        if data.get(field):
            return str(data[field])
    for field in ("resident", "household", "pass", "identity", "compound"):
        if data.get(field):
            return short(str(data[field]))
    return "-"


def short(value: str) -> str:
    """An id short enough for a column: a UUID's first 8 digits, a long slug cut with '…'."""
    if len(value) == 36 and value.count("-") == 4:
        return value[:8]
    return value if len(value) <= SUBJECT_WIDTH else value[:SUBJECT_WIDTH - 1] + "…"


def pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a Chinese character takes two)."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - columns, 0)


def summary(kind: str, data: dict) -> str:
    """What happened, in a few words; the plain fields for a type not named here."""
    describe = SUMMARIES.get(kind)
    if describe is not None:
        try:
            return describe(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a field renamed or missing: the plain fields still say something
    return plain(data)


def plain(data: dict) -> str:
    """Up to five scalar fields as ``key=value``: not times, actors or secrets."""
    shown = [f"{key}={value}" for key, value in data.items()
             if key not in HIDDEN and not key.endswith(("_at", "_by")) and value not in (None, "", [])
             and isinstance(value, (str, int, float, bool))]
    return " ".join(shown[:5])


# -- helpers of the summaries -------------------------------------------------------------------

def _items(lines: list[dict]) -> str:
    return ", ".join(f"{x['item']}×{x['qty']}" + (f" (on hand {x['on_hand']})" if "on_hand" in x else "")
                     for x in lines)


def _where(d: dict) -> str:
    return "/".join(str(d[k]) for k in ("compound", "building", "gate") if d.get(k))


def _temp(value: Any) -> str:
    return f"{float(value):.1f}°C"


def _also(text: str | None, prefix: str = ", ") -> str:
    return f"{prefix}{text}" if text else ""


def _passage(d: dict) -> str:
    who = "visitor " if d.get("visitor") else ""
    return f"{who}{d['direction']} at {_where(d)}, {_temp(d['temperature_c'])}"


Describe = Callable[[dict], str]

REGISTRY: dict[str, Describe] = {
    "CompoundRegistered": lambda d: f"{d['name']} ({d['compound']}): {len(d['buildings'])} buildings, "
                                    f"{len(d['gates'])} gates",
    "HouseholdRegistered": lambda d: f"household registered at {_where(d)}",
    "ResidentRegistered": lambda d: f"registered in {short(d['household'])} at {_where(d)}"
                                    + _also(", ".join(d.get("vulnerabilities") or ()), "; "),
    "ArrivalRegistered": lambda d: f"arrived {d['arrived_on']}, class {d['city_class']}"
                                   + (", visited a risk area" if d.get("risk_area_visited") else "")
                                   + ("; to verify at the door" if d.get("requires_verification") else "; cleared"),
    "ArrivalVerified": lambda d: f"verified: {d['outcome']}"
                                 + ("" if d.get("documents_checked") else " (documents not checked)")
                                 + _also(d.get("note"), "; "),
    "ResidentMovedOut": lambda d: f"moved out of {short(d['household'])}" + _also(d.get("reason"), ": "),
    "IdentityGranted": lambda d: f"identity granted: {d['role']} of {d['scope']}"
                                 + _also(d.get("compound"), " at ") + _also(" ".join(d.get("grants") or ()), "; "),
    "IdentityRevoked": lambda d: "identity revoked" + _also(d.get("reason"), ": "),
    "ResidentUpdated": lambda d: "vulnerabilities now " + (", ".join(d.get("vulnerabilities") or ()) or "none"),
    "CallRecorded": lambda d: f"screening call about arrival {short(d['arrival'])}: {d['outcome']}",
    "TipOffRecorded": lambda d: f"tip-off: {d['kind']} at {_where(d)}",
    "TipOffFollowedUp": lambda d: f"tip-off followed up at {_where(d)}: {d['outcome']}",
}

CHECKPOINT: dict[str, Describe] = {
    "GateOpened": lambda d: f"gate {d['gate']} of {d['compound']} opened",
    "GateClosed": lambda d: f"gate {d['gate']} of {d['compound']} closed",
    "ControlLevelSet": lambda d: f"{d['compound']}: {d.get('previous') or 'open'} → {d['level']}",
    "PassIssued": lambda d: f"pass issued to {short(d['household'])}" + _also(d.get("replaces") and short(d["replaces"]),
                                                                              ", replacing "),
    "PassRevoked": lambda d: f"pass revoked: {d['reason']}" + _also(d.get("replaced_by") and short(d["replaced_by"]),
                                                                    ", replaced by "),
    "PassageAllowed": lambda d: f"allowed {_passage(d)}" + _also(d.get("destination"), ", going to "),
    "PassageDenied": lambda d: f"denied {_passage(d)}: {d['reason']}",
    "FeverDetected": lambda d: f"fever {_temp(d['temperature_c'])} at {_where(d)}"
                               + (f" (threshold {_temp(d['threshold_c'])})" if d.get("threshold_c") else ""),
    "ShiftStarted": lambda d: f"{d['staff']} on shift at {_where(d)}",
    "ShiftEnded": lambda d: f"{d['staff']} off shift at {_where(d)} after {float(d['hours']):.1f} h",
    "VehicleAllowed": lambda d: f"{d['purpose']} vehicle {d['direction']} at {_where(d)}, "
                                f"{len(d.get('passengers') or ()) + bool(d.get('driver'))} resident(s) aboard",
    "VehicleDenied": lambda d: f"{d['purpose']} vehicle turned back {d['direction']} at {_where(d)}: {d['reason']}"
                               + (f" ({short(d['resident'])})" if d.get("resident") else ""),
    "ParcelDropped": lambda d: f"{d['kind']} left at {d['compound']}/{d['gate']} for {short(d['household'])}",
    "ParcelCollected": lambda d: f"{d['kind']} collected at {d['compound']}/{d['gate']}"
                                 + (f", carried to the door by {d['volunteer']}" if d.get("volunteer") else ""),
}

QUARANTINE: dict[str, Describe] = {
    "CaseOpened": lambda d: f"{d['kind']} case opened ({d['reason']}), {d['starts_on']} to {d['ends_on']}",
    "CheckinRecorded": lambda d: f"check-in {d['on']}",
    "SymptomsReported": lambda d: f"abnormal check-in {d['on']}"
                                  + _also(", ".join(w for w, k in (("fever", "fever"), ("symptoms", "symptomatic"))
                                                    if d.get(k)), ": "),
    "CheckinMissed": lambda d: f"check-in of {d['on']} missed",
    "CaseTransferred": lambda d: f"transferred to {d['to']}" + _also(d.get("ends_on"), " until "),
    "CaseReleased": lambda d: f"released {d['on']}, monitoring until {d['monitoring_until']}",
    "CaseClosed": lambda d: f"case closed {d['on']}",
    "AreaSealed": lambda d: f"{_where(d)}{'' if d.get('building') else ' (whole compound)'} sealed"
                            + _also(d.get("until"), " until "),
    "SealExtended": lambda d: f"seal of {_where(d)}{'' if d.get('building') else ' (whole compound)'} extended "
                              f"to {d['until']}" + _also(d.get("screening"), " for screening "),
    "SealLifted": lambda d: f"seal of {_where(d)}{'' if d.get('building') else ' (whole compound)'} lifted",
    "ScreeningScheduled": lambda d: f"screening {d['on']} at {d['compound']}, "
                                    + ", ".join(f"{s['label']} {s['from'][:5]}-{s['to'][:5]}" for s in d["slots"])
                                    + ("; stay in until the result" if d.get("stay_in_until_result") else ""),
    "SampleCodesIssued": lambda d: f"{d['count']} sample codes printed for screening {d['screening']}",
    "SampleTaken": lambda d: "sample taken" + (f" ({d['slot']})" if d.get("slot") else "")
                             + ("; stays in until the result" if d.get("stay_in_until_result") else ""),
    "ResultRecorded": lambda d: f"result {d['result']}" + (", case opened" if d.get("case") else ""),
}

LOGISTICS: dict[str, Describe] = {
    "SupplyRequested": lambda d: f"{d['kind']} requested: {_items(d['items'])}, priority {d['priority']}"
                                 + (f" ({', '.join(d['priority_reasons'])})" if d.get("priority_reasons") else "")
                                 + _also(d.get("daily_on"), "; daily food of "),
    "DeliveryAssigned": lambda d: f"{'reassigned' if d.get('reassigned') else 'assigned'} to {d['volunteer']}, "
                                  f"attempt {d['attempt']}: {_items(d['items'])}",
    "DeliveryCompleted": lambda d: f"delivered by {d['volunteer']}: {_items(d['items'])}",
    "DeliveryFailed": lambda d: f"delivery failed ({d['outcome'].replace('_', ' ')}), attempt {d['attempt']}"
                                + (", welfare check" if d.get("welfare_check") else ""),
    "WelfareCheckRaised": lambda d: f"welfare check needed at {_where(d)}: {', '.join(d['vulnerabilities'])}",
    "WelfareCheckResolved": lambda d: f"welfare check: {d['outcome'].replace('_', ' ')}" + _also(d.get("note"), "; "),
    "SupplyRequestClosed": lambda d: f"request {short(d['request'])} closed: {d['reason']}",
    "StockReceived": lambda d: f"stock in ({d['source']}{_also(d.get('from'), ', ')}): {_items(d['items'])}",
    "StockConsumed": lambda d: f"stock out: {_items(d['items'])}",
    "StockReturned": lambda d: f"stock back: {_items(d['items'])}",
    "MasksReserved": lambda d: f"{d['qty']} masks reserved ({d['reserved_in_period']}/{d['limit']} "
                               f"{d['period_start']} to {d['period_end']})",
    "VoucherRedeemed": lambda d: f"mask voucher redeemed: {d['qty']} masks",
    "DailySupplyStarted": lambda d: f"daily food from {d['starts_on']} ({d['cause']})",
    "DailySupplyStopped": lambda d: f"daily food: {d['cause']} over"
                                    + (f", still {', '.join(d['causes'])}" if d.get("active") else ", stopped"),
    "GroupOrderPlaced": lambda d: f"group order {short(d['order'])} from {d['supplier']}: {_items(d['items'])} "
                                  f"for {d['households']} households",
    "GroupOrderDelivered": lambda d: f"group order {short(d['order'])} left at {_where(d)}",
    "GroupOrderHandedOut": lambda d: f"group order {short(d['order'])} handed out in {d['building']}: "
                                     f"{d['households']} households, {d['handed_out']} in all"
                                     + (", done" if d.get("complete") else ""),
    "VolunteerRegistered": lambda d: f"{d['volunteer']} in team {d['team']} ({d['unit_kind'].replace('_', ' ')})"
                                     + _also(d.get("previous_team"), ", was "),
    "VolunteerHoursRecorded": lambda d: f"{d['volunteer']}: {d['hours']:g} h {d['kind'].replace('_', ' ')} on "
                                        f"{d['on']}" + _also(d.get("team"), ", team "),
    "VisitRecorded": lambda d: f"door-to-door visit: {d['outcome'].replace('_', ' ')}"
                               + _also(d.get("volunteer"), ", by "),
}

SUMMARIES: dict[str, Describe] = {**REGISTRY, **CHECKPOINT, **QUARANTINE, **LOGISTICS}
