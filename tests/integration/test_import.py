"""``cordon import``: the city's lists and a household book through the public API, as staff with
their own credentials, on a real registry (NATS, PostgreSQL)."""
from __future__ import annotations

import argparse
import csv
import io
import json

import asyncpg
import pytest

from services.imports import cli
from services.registry.app import spec
from shared.identity import Identity
from tests.support.bus import authority_for, connect
from tests.support.cordon import COMMUNITY, Client, community, household, prc_id, running

pytestmark = pytest.mark.integration

ROWS, BAD_EVERY = 10_000, 33  # every 33rd row bad: 303 of 10,000, about 3 %
COLUMNS = ["name", "id_number", "phone", "origin", "transport", "transport_number", "arrived_on", "city_class",
           "risk_area_visited", "compound", "building", "address", "visited"]
#: Bad rows in turn: four the import refuses itself, one the registry refuses (no such compound).
BAD = [("arrived_on", {"arrived_on": "2020-02-31"}), ("id_number", {"id_number": "310105195000000000"}),
       ("name", {"name": ""}), ("city_class", {"city_class": "C"}), ("compound", {"compound": "no-such-place"})]


@pytest.fixture
async def registry(nats_url, pg_dsn):
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        client = Client(nc)
        await community(client)
        yield client
        await nc.close()


def staff_creds(nats_url: str, folder) -> str:
    """Credentials of staff of Nangong, minted by the server's authority as `cordon identity add` does."""
    _, text = authority_for(nats_url).user_creds(Identity(name="li-wei", role="staff", scope=COMMUNITY))
    path = folder / "li-wei.creds"
    path.write_text(text)
    return str(path)


def arrivals_file(path, residents_ids: list[str]) -> dict[int, str]:
    """The city's list: ROWS arrivals, the first of them residents' ID numbers; the expected error
    report, {line: field}."""
    out, expected = io.StringIO(), {}
    writer = csv.DictWriter(out, COLUMNS)
    writer.writeheader()
    for i in range(ROWS):
        line = i + 2  # the header is line 1
        row = {"name": "王小伟", "id_number": residents_ids[i] if i < len(residents_ids) else prc_id(500_000 + i),
               "phone": "13800000000", "origin": "武汉", "transport": "train", "transport_number": "G1234",
               "arrived_on": "2020-02-16", "city_class": "A" if i % 2 else "B", "risk_area_visited": "no",
               "compound": "nangong-1", "building": "b1", "address": f"b1 room {i}",
               "visited": "武汉|2020-02-01|2020-02-10"}
        if i % BAD_EVERY == BAD_EVERY - 1:
            field, change = BAD[(i // BAD_EVERY) % len(BAD)]
            row.update(change)
            expected[line] = field
        writer.writerow(row)
    path.write_text(out.getvalue(), encoding="utf-8")
    return expected


async def import_(kind: str, path, creds: str, nats_url: str) -> tuple[int, dict]:
    """``cordon import KIND PATH --json`` with ``creds``: the exit code and the summary."""
    args = argparse.Namespace(kind=kind, file=path, community=None, in_flight=256, json=True)
    out, err = io.StringIO(), io.StringIO()
    code = await cli.main(nats_url, creds, args, out, err)
    print(err.getvalue())
    return code, json.loads(out.getvalue())


async def counts(pg_dsn: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return (await conn.fetchval("SELECT count(*) FROM registry.events"),
                await conn.fetchval("SELECT count(*) FROM registry.pending"),
                await conn.fetchval("SELECT count(*) FROM registry.arrivals"))
    finally:
        await conn.close()


async def test_a_list_of_ten_thousand_with_bad_rows_imports_in_one_run_and_twice_writes_nothing(
        registry, nats_url, pg_dsn, tmp_path):
    # given residents of Nangong, whose ID numbers are the first rows of the city's list
    home = await household(registry)
    ids = [prc_id(900_000 + n) for n in range(20)]
    for n, id_number in enumerate(ids):
        await registry.ok("register_resident", household=home, name="李四", id_number=id_number, birth_year=1950)
    source = tmp_path / "arrivals.csv"
    expected = arrivals_file(source, ids)
    creds = staff_creds(nats_url, tmp_path)

    # when staff import it with their own credentials
    code, summary = await import_("arrivals", source, creds, nats_url)

    # then each good row is the resident's arrival or a pending registration; every bad row is in
    # the report, with its line and field
    bad_here = sum(1 for f in expected.values() if f == "compound")
    assert code == cli.EXIT_REFUSED
    assert summary["rows"] == ROWS
    assert summary["registered"] == len(ids)
    assert summary["pending"] == ROWS - len(expected) - len(ids)
    assert (summary["refused"], summary["invalid"]) == (bad_here, len(expected) - bad_here)
    with open(str(source) + ".errors.csv", encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    assert {int(r["row"]): r["field"] for r in report} == expected and len(report) == len(expected)
    assert all(r["reason"] for r in report)
    before = await counts(pg_dsn)
    assert before[1] == summary["pending"] and before[2] == summary["registered"]

    # when the same file is imported again, nothing new is written and the report is the same
    code, again = await import_("arrivals", source, creds, nats_url)
    assert code == cli.EXIT_REFUSED
    assert await counts(pg_dsn) == before
    assert again["already_there"] == summary["registered"] + summary["pending"]
    assert (again["registered"], again["pending"], again["refused"]) == (0, 0, bad_here)
    with open(str(source) + ".errors.csv", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == report


def listed(**change) -> dict:
    """A row of the city's list as register_pending_arrival takes it."""
    return {"community": COMMUNITY, "name": "赵六一", "id_number": prc_id(700_001), "phone": "13900000001",
            "address": "南宫路 7 号", "origin": "温州", "transport": {"kind": "train", "number": "D3101"},
            "visited": [{"place": "温州", "from": "2020-02-01", "to": "2020-02-14"}], "arrived_on": "2020-02-16",
            "city_class": "A", "risk_area_visited": True, **change}


async def test_a_pending_registration_is_listed_then_completed_at_the_door_and_bad_input_writes_nothing(
        registry, pg_dsn):
    # given a person on the city's list with no household here (双无)
    reply = await registry.ok("register_pending_arrival", **listed(compound="nangong-1"))
    [pending] = reply["events"]
    assert pending["type"] == "ArrivalPendingRegistration"
    arrival = pending["data"]["arrival"]
    assert pending["data"]["display_name"] == "赵*一"
    assert "温州" not in json.dumps(reply, ensure_ascii=False) and "13900000001" not in json.dumps(reply)
    conn = await asyncpg.connect(pg_dsn)
    try:
        sealed = bytes(await conn.fetchval("SELECT sealed FROM registry.pending WHERE arrival = $1", arrival))
    finally:
        await conn.close()
    assert "赵六一".encode() not in sealed and b"13900000001" not in sealed and "温州".encode() not in sealed
    # the same person on another list for the same day waits already
    again = await registry.send("register_pending_arrival", **listed())
    assert again["error"]["reason"] == "already_pending", again

    # when staff list the work, they see the masked name and what verification needs
    page = (await registry.nc.request("cordon.qry.registry.pending_registrations",
                                      json.dumps({"community": COMMUNITY}).encode(), timeout=5))
    rows = json.loads(page.data)["pending"]
    assert [(r["arrival"], r["display_name"], r["city_class"]) for r in rows] == [(arrival, "赵*一", "A")]

    # bad input for the new commands: a clear error, nothing written
    events, *_ = await counts(pg_dsn)
    home = await household(registry)
    events += 1
    for command, fields, code, field in [
        ("register_pending_arrival", listed(id_number="310105195000000000"), "invalid", "id_number"),
        ("register_pending_arrival", listed(building="b1"), "invalid", "compound"),
        ("register_pending_arrival", listed(compound="nangong-9"), "not_found", "compound"),
        ("register_pending_arrival", listed(arrived_on="2099-01-01"), "invalid", "arrived_on"),
        ("register_pending_arrival", {**listed(), "extra": 1}, "invalid", "extra"),
        ("complete_registration", {"arrival": "no-such-arrival", "household": home}, "not_found", "arrival"),
        ("complete_registration", {"arrival": arrival, "household": "no-such-household"}, "not_found", "household"),
        ("complete_registration", {"arrival": arrival, "household": home, "phone": "call me"}, "invalid", "phone"),
    ]:
        bad = await registry.send(command, **fields)
        assert bad["error"]["code"] == code and bad["error"].get("field") == field, (command, fields, bad)
    assert (await counts(pg_dsn))[0] == events

    # when the committee completes the registration at the door, in a household of Nangong
    done = await registry.ok("complete_registration", arrival=arrival, household=home, vulnerabilities=["elderly_alone"])
    types = [e["type"] for e in done["events"]]
    assert types == ["ResidentRegistered", "ArrivalRegistered", "RegistrationCompleted"]
    person = done["events"][0]["data"]["resident"]
    assert done["events"][1]["data"]["arrival"] == arrival and done["events"][1]["data"]["requires_verification"]

    # then the work list is empty, the person is a resident with the listed data sealed, and the
    # completion cannot be done twice
    page = await registry.nc.request("cordon.qry.registry.pending_registrations",
                                     json.dumps({"community": COMMUNITY}).encode(), timeout=5)
    assert json.loads(page.data)["pending"] == []
    twice = await registry.send("complete_registration", arrival=arrival, household=home)
    assert twice["error"]["reason"] == "already_completed"
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT personal, id_hash FROM registry.residents WHERE resident = $1", person)
        assert row["id_hash"] and b"13900000001" not in row["personal"]
        assert await conn.fetchval("SELECT sealed FROM registry.pending WHERE arrival = $1", arrival) is None
        assert await conn.fetchval("SELECT sealed IS NOT NULL FROM registry.arrivals WHERE arrival = $1", arrival)
    finally:
        await conn.close()
    # and the next list that names them registers the arrival for the resident
    later = await registry.ok("register_pending_arrival", **listed(arrived_on="2020-02-17"))
    assert later["events"][0]["type"] == "ArrivalRegistered" and later["events"][0]["data"]["resident"] == person


async def test_a_household_book_imports_households_and_residents_once(registry, nats_url, pg_dsn, tmp_path):
    # given a committee's household book: three households, one row with a bad ID number
    book = tmp_path / "book.csv"
    book.write_text(
        "compound,building,address,name,id_number,phone,birth_year,vulnerabilities\n"
        f"nangong-1,b1,b1 101,张三,{prc_id(800_001)},13800000001,,\n"
        f"nangong-1,b1,b1 101,张四,{prc_id(800_002)},,1980,\n"
        f"nangong-1,b2,b2 202,王五,{prc_id(800_003)},,,elderly_alone;chronic_illness\n"
        f"nangong-1,b9,b9 909,刘六,{prc_id(800_004)},,,\n"
        "nangong-1,b2,b2 203,陈七,310105195000000000,,,\n", encoding="utf-8")
    creds = staff_creds(nats_url, tmp_path)

    code, summary = await import_("residents", book, creds, nats_url)

    assert code == cli.EXIT_REFUSED
    assert (summary["registered"], summary["refused"], summary["invalid"]) == (3, 1, 1)
    with open(str(book) + ".errors.csv", encoding="utf-8") as f:
        assert [(r["row"], r["field"]) for r in csv.DictReader(f)] == [("5", "building"), ("6", "id_number")]
    before = await counts(pg_dsn)

    # when it is imported again: nothing new
    code, again = await import_("residents", book, creds, nats_url)
    assert (again["already_there"], again["registered"]) == (3, 0)
    assert await counts(pg_dsn) == before
