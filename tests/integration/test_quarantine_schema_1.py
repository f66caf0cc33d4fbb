"""The quarantine's check-ins of schema 2 (issue 16): CheckinRecorded without the temperature and
symptoms, SymptomsReported with why (fever, symptoms) only; the readings stay in
quarantine.checkins. SampleTaken of schema 2, without the code printed for the resident
(quarantine.samples). A record written before (schema-1 check-ins, readings in them) goes on, on
real NATS and PostgreSQL: the quarantine decides on the old day (a second check-in appends after
it), its history gives the readings of old and new check-ins alike, the views show them on the
resident's timeline as schema 2, a result is recorded on an old sample, and the audit chain holds
over old and new events.
"""
from __future__ import annotations

from datetime import datetime

import asyncpg
import pytest

from services.audit import log
from services.audit.app import spec as audit_spec
from services.quarantine import domain
from services.quarantine.app import spec as quarantine_spec
from services.quarantine.config import Config as QuarantineConfig
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared import envelope as env
from shared import store
from shared.contracts.quarantine import CheckinRecordedV1, SampleTakenV1, SymptomsReportedV1
from shared.subjects import STREAM, event_subject
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, resident, running
from tests.support.views import query, wait_position

pytestmark = pytest.mark.integration


async def _record_old_sample(db, screening: str, who: str) -> None:
    """A sample as the quarantine recorded it before issue 16: with the code printed for the resident."""
    at = datetime.now().astimezone()
    event = SampleTakenV1(community=COMMUNITY, screening=screening, resident=who, code="A-0017",
                          compound="nangong-1", taken_at=at, taken_by="staff:li-wei")
    stream = domain.sample_stream(screening, who)
    e = env.wrap(event, stream_id=stream, stream_version=1, occurred_at=at, actor="staff:li-wei",
                 correlation_id="before")
    await store.append(db, "quarantine", [store.NewEvent(
        event_id=e.event_id, stream_id=stream, version=1, type=e.type, community=COMMUNITY,
        recorded_at=e.recorded_at, envelope=env.encode(e), subject=event_subject(COMMUNITY, "quarantine", e.type))])


async def _record_schema_1(db, case: str, who: str, today) -> None:
    """The day's check-in as the quarantine recorded it before issue 16: schema-1 events (temperature,
    symptoms in them) in its record and outbox, which its relay publishes, and the case's row."""
    at = datetime.now().astimezone()
    fields = dict(community=COMMUNITY, case=case, resident=who, on=today, temperature_c=38.2,
                  symptoms=["cough", "fever"])
    stream = domain.day_stream(case, today)
    rows = []
    for version, event in enumerate([CheckinRecordedV1(**fields, recorded_at=at, recorded_by="staff:li-wei"),
                                     SymptomsReportedV1(**fields, reported_at=at, reported_by="staff:li-wei")], 1):
        e = env.wrap(event, stream_id=stream, stream_version=version, occurred_at=at, actor="staff:li-wei",
                     correlation_id="before")
        rows.append(store.NewEvent(
            event_id=e.event_id, stream_id=stream, version=version, type=e.type, community=COMMUNITY,
            recorded_at=e.recorded_at, envelope=env.encode(e),
            subject=event_subject(COMMUNITY, "quarantine", e.type)))
    assert all(b'"schema":1' in r.envelope and b"38.2" in r.envelope for r in rows)
    async with db.transaction():
        await store.append(db, "quarantine", rows)
        await db.execute("UPDATE quarantine.cases SET checkins = 1, last_checkin_on = $2 WHERE case_id = $1",
                         case, today)


async def _head_at_least(nc, n: int) -> int:
    last = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    return last if last >= n else 0


async def _audited(db, seq: int) -> bool:
    return (await db.fetchval("SELECT hwm FROM audit.head") or 0) >= seq


async def test_a_record_of_schema_1_check_ins_decodes_projects_and_stays_audited(nats_url, pg_dsn):
    db = await asyncpg.connect(pg_dsn)
    today = QuarantineConfig().day(datetime.now().astimezone())
    async with running(registry_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        reg, qa = Client(nc), Client(nc, "quarantine")
        await community(reg)
        home = await household(reg)
        who, neighbour = await resident(reg, home), await resident(reg, home)
        # given a home case whose check-in of today a quarantine of before recorded in schema 1
        async with running(quarantine_spec(), nats_url, pg_dsn):
            await eventually(lambda: db.fetchval("SELECT 1 FROM quarantine.dir_residents WHERE resident = $1", who),
                             what="the resident in the quarantine's directory")
            case = (await qa.ok("open_case", community=COMMUNITY, resident=who, kind="home", reason="arrival",
                                starts_on=str(today)))["events"][0]["data"]["case"]
            # and a screening round of today, where the neighbour's sample was recorded in schema 1 (its code in it)
            screening = (await qa.ok("schedule_screening", community=COMMUNITY, compound="nangong-1", on=str(today),
                                     slots=[{"label": "everyone", "from": "00:00", "to": "23:59"}])
                         )["events"][0]["data"]["screening"]
        await _record_schema_1(db, case, who, today)
        await _record_old_sample(db, screening, neighbour)

        async with running(quarantine_spec(), nats_url, pg_dsn), running(views_spec(), nats_url, pg_dsn), \
                running(audit_spec(), nats_url, pg_dsn):
            # when the quarantine of schema 2 decides on that day: a second check-in appends after it
            second = await qa.ok("record_checkin", case=case, on=str(today), temperature_c=36.6)
            [new] = second["events"]
            assert (new["type"], new["schema"], new["stream_version"]) == ("CheckinRecorded", 2, 3)
            assert "temperature_c" not in new["data"] and "symptoms" not in new["data"]
            assert await db.fetchval("SELECT checkins FROM quarantine.cases WHERE case_id = $1", case) == 2

            # and it records the result of the old sample, and a new sample without its code on the bus
            result = await qa.ok("record_result", screening=screening, resident=neighbour, result="negative")
            assert [(e["type"], e["stream_version"]) for e in result["events"]] == [("ResultRecorded", 2)]
            [taken] = (await qa.ok("record_sample", screening=screening, resident=who, code="B-0042"))["events"]
            assert (taken["type"], taken["schema"]) == ("SampleTaken", 2) and "code" not in taken["data"]
            assert await db.fetchval("SELECT code FROM quarantine.samples WHERE resident = $1", who) == "B-0042"

            # then the history gives the readings of the old check-in and of the new one alike
            history = await query(nc, "quarantine.history", resident=who)
            checkins = [(e["type"], e["schema"], e["data"]["temperature_c"], e["data"]["symptoms"])
                        for e in history["events"] if e["type"] != "CaseOpened"]
            assert checkins == [("CheckinRecorded", 1, 38.2, ["cough", "fever"]),
                                ("SymptomsReported", 1, 38.2, ["cough", "fever"]),
                                ("CheckinRecorded", 2, 36.6, [])]

            # then the views show the old check-ins on the resident's timeline as schema 2: no reading
            # (the relay publishes after the reply: the head is read once both records are on the stream)
            recorded = await db.fetchval("SELECT (SELECT count(*) FROM registry.events) "
                                         "+ (SELECT count(*) FROM quarantine.events)")
            head = await eventually(lambda: _head_at_least(nc, recorded), what="the records on the stream")
            await wait_position(nc, head)
            timeline = await query(nc, "timeline", resident=who)
            shown = [e for e in timeline["events"] if e["type"] in ("CheckinRecorded", "SymptomsReported")]
            assert [e["type"] for e in shown] == ["CheckinRecorded", "SymptomsReported", "CheckinRecorded"]
            assert shown[1]["data"]["fever"] is True and shown[1]["data"]["symptomatic"] is True
            assert not any("temperature_c" in e["data"] or "symptoms" in e["data"] for e in shown)

            # then the audit log holds every event as recorded, old and new, and its chain verifies
            await eventually(lambda: _audited(db, head), what="the audit log at the stream's head")
            verdict = await log.verify(db)
            assert verdict.ok and verdict.rows == head
        await nc.close()
    await db.close()

