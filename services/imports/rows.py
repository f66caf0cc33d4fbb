"""Reading an import file (CSV or JSON lines) into checked rows; pure, no I/O but the file's text.

Each data row becomes a :class:`Row` (the command's fields, ready to send) or a :class:`RowError`
(its line, the field, why): local validation catches what the file itself gets wrong (a missing
name, a date that is no date, an ID number whose check digit fails) before anything is sent; the
service's refusals are added to the same report later (:mod:`services.imports.report`).

``line`` is the row's line in the file as a spreadsheet shows it: a CSV's header is line 1, its
first data row line 2; a JSON-lines file's first object is line 1.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date

from shared.errors import Invalid
from shared.idcard import check_id_number

#: Columns of an arrivals file: required, then optional (README "Bulk lists from the city").
ARRIVAL_REQUIRED = ("name", "id_number", "origin", "arrived_on", "transport", "city_class")
ARRIVAL_OPTIONAL = ("compound", "building", "address", "phone", "transport_number", "risk_area_visited", "visited")
#: Columns of a household book: one resident a row, households by (compound, building, address).
RESIDENT_REQUIRED = ("compound", "building", "address", "name", "id_number")
RESIDENT_OPTIONAL = ("phone", "birth_year", "vulnerabilities")

TRANSPORTS = ("train", "flight", "road", "other")
VULNERABILITIES = ("elderly_alone", "limited_mobility", "chronic_illness", "medical_device")
_YES = {"true", "yes", "y", "1", "是"}
_NO = {"false", "no", "n", "0", "否", ""}


class FileError(Exception):
    """The file as a whole cannot be imported (unreadable, not CSV or JSON lines, columns wrong)."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    fields: dict


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    reason: str


def digest(data: bytes) -> str:
    """The file's identity for command ids: a hash of its whole content, which names no one (the
    same file again gives the same ids, so the services answer the stored replies)."""
    return hashlib.sha256(data).hexdigest()[:24]


def records(data: bytes, required: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line, {column: value}) for each data row; :class:`FileError` when the file or its columns are wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    json_lines = text.lstrip().startswith("{")
    header, rows = ((), _json_lines(text)) if json_lines else _csv(text)
    # a CSV's columns are its header's; a JSON line's, its keys (a missing one is an empty cell)
    columns = set(header) | {c for _, r in rows for c in r}
    if unknown := sorted(columns - set(required) - set(optional)):
        raise FileError(f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(required + optional)}")
    if not json_lines and (missing := [c for c in required if c not in columns]):
        raise FileError(f"missing column(s) {', '.join(missing)}")
    return rows


def _csv(text: str) -> tuple[list[str], list[tuple[int, dict]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise FileError("the file is empty: a header line of columns, then a row a line")
    header = [(name or "").strip() for name in reader.fieldnames]
    out = []
    for raw in reader:
        if None in raw:
            raise FileError(f"line {reader.line_num}: more values than columns")
        values = {h: (v or "").strip() for h, v in zip(header, raw.values())}
        if any(values.values()):  # a blank line of a spreadsheet is no row
            out.append((reader.line_num, values))
    return header, out


def _json_lines(text: str) -> list[tuple[int, dict]]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FileError(f"line {n}: not JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise FileError(f"line {n}: a JSON object per line")
        out.append((n, {k: v.strip() if isinstance(v, str) else v for k, v in value.items()}))
    return out


# -- arrivals ------------------------------------------------------------------------------------


def arrival(line: int, values: dict) -> Row | RowError:
    """The fields of ``register_pending_arrival`` from one row (without community, actor, command id)."""
    try:
        fields = {f: _required(values, f) for f in ("name", "origin")}
        fields["id_number"] = _id_number(values)
        fields["arrived_on"] = _day(values.get("arrived_on"), "arrived_on")
        fields["transport"] = _transport(values)
        fields["city_class"] = _choice(str(values.get("city_class") or "").upper(), ("A", "B"), "city_class")
        fields["risk_area_visited"] = _flag(values.get("risk_area_visited"), "risk_area_visited")
        fields["visited"] = _visited(values.get("visited"))
        for f in ("compound", "building", "address", "phone"):
            if value := _text(values.get(f)):
                fields[f] = value
    except Invalid as err:
        return RowError(line, err.field or "", err.message)
    return Row(line, fields)


def _transport(values: dict) -> dict:
    kind = _choice(str(values.get("transport") or "").lower(), TRANSPORTS, "transport")
    number = _text(values.get("transport_number"))
    return {"kind": kind, **({"number": number} if number else {})}


def _visited(value) -> list[dict]:
    """JSON lines: a list of {place, from, to}; CSV: ``place|from|to`` separated by ``;``."""
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [{"place": _text(v.get("place")), "from": _day(v.get("from"), "visited"), "to": _day(v.get("to"), "visited")}
                if isinstance(v, dict) else _bad("visited", "each place visited is {place, from, to}") for v in value]
    out = []
    for part in str(value).split(";"):
        if not part.strip():
            continue
        bits = [b.strip() for b in part.split("|")]
        if len(bits) != 3:
            _bad("visited", f"{part.strip()!r}: write place|YYYY-MM-DD|YYYY-MM-DD, places separated by ;")
        out.append({"place": bits[0], "from": _day(bits[1], "visited"), "to": _day(bits[2], "visited")})
    return out


# -- household book ------------------------------------------------------------------------------


def resident(line: int, values: dict) -> Row | RowError:
    """The fields of ``register_resident`` from one row, and under ``"home"`` its household's
    (compound, building, address)."""
    try:
        home = tuple(_required(values, f) for f in ("compound", "building", "address"))
        fields = {"name": _required(values, "name"), "id_number": _id_number(values), "home": home}
        year = values.get("birth_year")
        fields["birth_year"] = _year(year) if year not in (None, "") else _year_of(fields["id_number"])
        if phone := _text(values.get("phone")):
            fields["phone"] = phone
        fields["vulnerabilities"] = _vulnerabilities(values.get("vulnerabilities"))
    except Invalid as err:
        return RowError(line, err.field or "", err.message)
    return Row(line, fields)


def _vulnerabilities(value) -> list[str]:
    items = value if isinstance(value, list) else [v.strip() for v in str(value or "").split(";") if v.strip()]
    return [_choice(str(v), VULNERABILITIES, "vulnerabilities") for v in items]


def _year(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        _bad("birth_year", f"{value!r} is no year (e.g. 1956)")


def _year_of(id_number: str) -> int:
    if len(id_number) == 18:
        return int(id_number[6:10])
    _bad("birth_year", "required when the ID number is no ID card number")


# -- cells ---------------------------------------------------------------------------------------


def _bad(field: str, reason: str):
    raise Invalid(reason, field=field)


def _text(value) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None


def _required(values: dict, field: str) -> str:
    value = _text(values.get(field))
    if value is None:
        _bad(field, f"{field} is empty")
    return value


def _id_number(values: dict) -> str:
    return check_id_number(_required(values, "id_number").replace(" ", "").upper())


def _day(value, field: str) -> str:
    try:
        return date.fromisoformat(str(value or "").strip()).isoformat()
    except ValueError:
        _bad(field, f"{value!r} is no date: write YYYY-MM-DD")


def _choice(value: str, choices: tuple[str, ...], field: str) -> str:
    if value not in choices:
        _bad(field, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _flag(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in _YES or text in _NO:
        return text in _YES
    _bad(field, f"{value!r} is not yes or no")
