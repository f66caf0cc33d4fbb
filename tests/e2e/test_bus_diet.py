"""Less personal data on the bus (issue 16): the demo's day, played on a real Cordon (every service
a process, as ``cordon up`` runs them), puts on the CORDON stream no name, ID number, phone or full
address of anyone in the demo's book (its residents, their households' addresses, the visitors at
the gates), no birth year next to a resident, no travel history of an arrival (where from, the
train) and no reading of a quarantine check-in (temperature, symptoms). The README lists what the events still carry
and why (Contract changes, "Registry schema 2").

The check is a grep over every message's bytes (subject, headers, data): nothing decoded, so a
field a schema does not name, a new event, or a value tucked in a note is caught just the same."""
from __future__ import annotations

import re
import uuid

import nats
import pytest

from services.demo import plan as planning
from services.demo import run, system
from services.demo import street as streets
from shared.embedded import ensure_database
from shared.subjects import STREAM
from tests.support.bus import creds_for, start_secure_nats

pytestmark = pytest.mark.integration
SEED, SCALE = 21, 0.01


@pytest.fixture(scope="module")
async def cordon(pg_server, tmp_path_factory):
    """A fresh Cordon as in tests/e2e/test_demo.py: its own NATS (operator mode) and database, the
    demo's services as processes."""
    folder = tmp_path_factory.mktemp("bus-diet")
    nats_server = await start_secure_nats(folder)
    dsn = await ensure_database(pg_server.dsn, f"busdiet_{uuid.uuid4().hex[:12]}")
    try:
        async with system.services(nats_server.url, dsn, folder / "logs", creds=creds_for(nats_server.url),
                                   authority=nats_server.authority):
            yield nats_server.url
    finally:
        await nats_server.stop()


def personal_data(seed: int, scale: float) -> dict[str, set[str]]:
    """What the demo's book knows of people, by kind: every resident's name, ID number and phone,
    every household's full address, every visitor's name and phone."""
    street = streets.build(seed, scale)
    visitors = [p.visitor for p in planning.plan_day(street).passages if p.visitor]
    out = {
        "name": {r.name for r in street.residents} | {v["name"] for v in visitors},
        "id_number": {r.id_number for r in street.residents},
        "phone": {r.phone for r in street.residents if r.phone} | {v["phone"] for v in visitors},
        "address": {h.address for h in street.households},
        # as JSON strings: a train number is short, and only a value of its own gives it away
        "travel": {f'"{v}"' for a in planning.plan_day(street).arrivals
                   for v in (a.origin, a.transport.get("number"), *(x["place"] for x in a.visited)) if v},
    }
    return {kind: {v for v in values if v} for kind, values in out.items()}


async def every_message(url: str) -> list[bytes]:
    """Every message of the CORDON stream, from its first, as bytes: subject, headers and data."""
    nc = await nats.connect(url, user_credentials=creds_for(url))
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(STREAM, seq)
            headers = "".join(f"{k}:{v}\n" for k, v in (msg.headers or {}).items())
            out.append(msg.subject.encode() + b"\n" + headers.encode() + (msg.data or b""))
        return out
    finally:
        await nc.close()


def found(messages: list[bytes], book: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each value of the book that appears in some message, by kind."""
    hits: dict[str, list[str]] = {}
    for kind, values in book.items():
        needles = [(v, v.encode()) for v in values]
        hits[kind] = sorted({v for v, needle in needles for m in messages if needle in m})
    return {kind: values for kind, values in hits.items() if values}


@pytest.mark.timeout(300)
async def test_the_demos_day_puts_no_name_id_number_phone_or_address_on_the_bus(cordon):
    # Given the demo's day, played on a fresh Cordon
    result = await run.play(cordon, creds_for(cordon), seed=SEED, scale=SCALE, quiet=True)
    assert result.ok and result.played.accepted == result.played.sent
    # when every message of the stream is read back
    messages = await every_message(cordon)
    book = personal_data(SEED, SCALE)
    assert len(messages) > 500 and all(len(values) > 20 for values in book.values())
    # then none holds a name, ID number, phone or full address of the book
    assert found(messages, book) == {}
    # and the registry's events say where a household is (compound, building), not its door
    registered = [m for m in messages if b".registry.HouseholdRegistered\n" in m]
    assert registered and not any(b'"address"' in m for m in registered)
    residents = [m for m in messages if b".registry.ResidentRegistered\n" in m]
    assert residents and not any(b'"birth_year"' in m for m in residents)
    # and an arrival says when and which class, not where from nor by which train
    arrivals = [m for m in messages if b".registry.ArrivalRegistered\n" in m]
    assert arrivals and not any(f in m for m in arrivals for f in (b'"origin"', b'"transport"', b'"visited"'))
    # and a check-in that it happened (abnormal: fever, symptoms yes or no), not what was read
    checkins = [m for m in messages if b".quarantine.CheckinRecorded\n" in m or b".quarantine.SymptomsReported\n" in m]
    assert checkins and any(b".SymptomsReported\n" in m for m in checkins)
    assert not any(f in m for m in checkins for f in (b'"temperature_c"', b'"symptoms"'))
    # and a vehicle checked at a gate (issue 17) is on the bus without its plate or an outside
    # driver's name and phone (sealed in checkpoint.vehicles): no plate of any province's form at all
    vehicles = [m for m in messages if b".checkpoint.Vehicle" in m]
    assert vehicles and not any(f in m for m in vehicles for f in (b'"plate"', b'"name"', b'"phone"'))
    assert not any(re.search(r"沪[A-Z]\d{5}".encode(), m) for m in messages)
    assert not any(re.search(rb"139\d{8}", m) for m in vehicles)
