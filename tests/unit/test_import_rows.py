"""``cordon import``'s own checks, pure: a file's rows read and checked, the replies counted, the
error report written."""
from __future__ import annotations

import csv
from datetime import datetime, timezone

import pytest

from services.imports import report, rows
from services.imports.rows import FileError, Row, RowError
from services.imports.run import household_id

ID_CARD = "11010519491231002X"
HEADER = "name,id_number,origin,arrived_on,transport,city_class,transport_number,risk_area_visited,visited\n"


def arrivals(text: str) -> list:
    data = text.encode()
    return [rows.arrival(line, values) for line, values in rows.records(data, rows.ARRIVAL_REQUIRED,
                                                                         rows.ARRIVAL_OPTIONAL)]


def test_a_good_csv_row_becomes_the_commands_fields_with_its_spreadsheet_line():
    [row] = arrivals(HEADER + f"赵六一,{ID_CARD.lower()},温州,2020-02-16,Train,a,D3101,是,温州|2020-02-01|2020-02-14\n")
    assert row == Row(2, {"name": "赵六一", "id_number": ID_CARD, "origin": "温州", "arrived_on": "2020-02-16",
                          "transport": {"kind": "train", "number": "D3101"}, "city_class": "A",
                          "risk_area_visited": True,
                          "visited": [{"place": "温州", "from": "2020-02-01", "to": "2020-02-14"}]})


def test_json_lines_take_the_same_columns_and_visits_as_objects():
    [row] = [rows.arrival(line, values) for line, values in rows.records(
        ('{"name": "赵六一", "id_number": "%s", "origin": "温州", "arrived_on": "2020-02-16", "transport": "road", '
         '"city_class": "B", "risk_area_visited": false, "visited": [{"place": "温州", "from": "2020-02-01", '
         '"to": "2020-02-02"}]}\n' % ID_CARD).encode(), rows.ARRIVAL_REQUIRED, rows.ARRIVAL_OPTIONAL)]
    assert row.line == 1 and row.fields["visited"][0]["to"] == "2020-02-02" and not row.fields["risk_area_visited"]


@pytest.mark.parametrize("cells, field", [
    (f",{ID_CARD},温州,2020-02-16,train,A,,,", "name"),
    ("赵六一,110105194912310021,温州,2020-02-16,train,A,,,", "id_number"),
    (f"赵六一,{ID_CARD},温州,2020-02-30,train,A,,,", "arrived_on"),
    (f"赵六一,{ID_CARD},温州,2020-02-16,boat,A,,,", "transport"),
    (f"赵六一,{ID_CARD},温州,2020-02-16,train,C,,,", "city_class"),
    (f"赵六一,{ID_CARD},温州,2020-02-16,train,A,,maybe,", "risk_area_visited"),
    (f"赵六一,{ID_CARD},温州,2020-02-16,train,A,,,温州 2020-02-01", "visited"),
])
def test_a_bad_cell_is_a_row_error_naming_its_line_and_field(cells, field):
    [error] = arrivals(HEADER + "\n" + cells + "\n")  # a blank line is skipped, not a row
    assert isinstance(error, RowError) and (error.line, error.field) == (3, field) and error.reason


@pytest.mark.parametrize("text, says", [
    ("name,id_number\n赵六一,x\n", "missing column(s) origin"),
    (HEADER.replace(",visited", ",visted") + "\n", "unknown column(s) visted"),
    ('{"name": 1}\nnot json\n', "line 2: not JSON"),
])
def test_a_file_with_wrong_columns_or_lines_is_refused_whole(text, says):
    with pytest.raises(FileError, match=says.replace("(", r"\(").replace(")", r"\)")):
        rows.records(text.encode(), rows.ARRIVAL_REQUIRED, rows.ARRIVAL_OPTIONAL)


def test_a_household_book_row_takes_its_birth_year_from_the_id_card_and_groups_by_home():
    [row, other] = [rows.resident(line, values) for line, values in rows.records(
        ("compound,building,address,name,id_number,birth_year,vulnerabilities\n"
         f"n-1,b1,b1 101,张三,{ID_CARD},,elderly_alone;chronic_illness\n"
         "n-1,b1,b1 101,张四,E1234567,,\n").encode(), rows.RESIDENT_REQUIRED, rows.RESIDENT_OPTIONAL)]
    assert row.fields["home"] == ("n-1", "b1", "b1 101") and row.fields["birth_year"] == 1949
    assert row.fields["vulnerabilities"] == ["elderly_alone", "chronic_illness"]
    assert isinstance(other, RowError) and other.field == "birth_year"


STARTED = datetime(2020, 2, 17, 1, 0, tzinfo=timezone.utc)


def reply(kind: str, recorded_at: str = "2020-02-17T01:00:01+00:00") -> dict:
    return {"ok": True, "events": [{"type": kind, "recorded_at": recorded_at}]}


def test_each_reply_is_counted_by_what_it_means():
    assert report.outcome(reply("ArrivalRegistered"), STARTED) == "registered"
    assert report.outcome(reply("ArrivalPendingRegistration"), STARTED) == "pending"
    # a stored reply: the same command of a run before this one
    assert report.outcome(reply("ArrivalPendingRegistration", "2020-02-17T00:59:59+00:00"), STARTED) == "already_there"
    assert report.outcome({"ok": False, "error": {"code": "rejected", "reason": "already_pending"}},
                          STARTED) == "already_there"
    assert report.outcome({"ok": False, "error": {"code": "conflict", "field": "id_number"}},
                          STARTED) == "already_there"
    refused = {"ok": False, "error": {"code": "not_found", "field": "compound", "message": "compound x is not"}}
    assert report.outcome(refused, STARTED) == "refused"
    assert report.refusal(7, refused) == RowError(7, "compound", "compound x is not")


def test_the_error_report_lies_beside_the_input_in_the_files_order(tmp_path):
    source = tmp_path / "arrivals.csv"
    path = report.errors_path(source)
    report.write_errors(path, [RowError(9, "compound", "no such compound"), RowError(3, "name", "name is empty")])
    assert path == tmp_path / "arrivals.csv.errors.csv"
    with path.open(encoding="utf-8") as f:
        assert list(csv.reader(f)) == [["row", "field", "reason"], ["3", "name", "name is empty"],
                                       ["9", "compound", "no such compound"]]


def test_ids_come_from_the_files_content_and_name_no_one():
    one, two = rows.digest(b"a,b\n1,2\n"), rows.digest(b"a,b\n1,3\n")
    assert one != two and one == rows.digest(b"a,b\n1,2\n")
    assert household_id(one, 2) == household_id(one, 2) != household_id(one, 3)
    assert household_id(one, 2).startswith("hh-")
