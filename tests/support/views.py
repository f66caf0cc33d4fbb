"""Helpers for the views and audit integration tests (no tests here): publish events in the shape
of the contracts straight to JetStream, as the four services' relays do, and a scripted day."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import nats

from shared import bus, envelope
from shared.contracts import checkpoint as cp
from shared.contracts import logistics as lg
from shared.contracts import quarantine as qa
from shared.contracts import registry as rg
from shared.subjects import event_subject
from tests.support.bus import connect

C = "changning.chengjiaqiao.nangong"
C2 = "changning.chengjiaqiao.wanli"
C3 = "jingan.jiangning.wuzhou"
CST = timezone(timedelta(hours=8))
D = date(2020, 2, 17)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """An instant on a Shanghai calendar day."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CST)


class Stream:
    """Publishes envelopes to CORDON with Nats-Msg-Id = event id, like a relay; returns sequences."""

    def __init__(self, nc):
        self.nc = nc
        self.js = nc.jetstream()
        self.last_seq = 0
        self.sent: list[bytes] = []

    @classmethod
    async def connect(cls, url: str) -> "Stream":
        nc = await connect(url)
        await bus.ensure_stream(nc.jetstream())
        return cls(nc)

    async def close(self) -> None:
        await self.nc.close()

    async def publish(self, event, actor: str = "staff:li-wei", event_id: str | None = None) -> bytes:
        """Publish ``event``, occurred at its own ``*_at`` time."""
        when = next(getattr(event, f) for f in event.__struct_fields__ if f.endswith("_at"))
        env = envelope.wrap(event, stream_id=f"{type(event).type_name.lower()}:{uuid.uuid4().hex[:8]}",
                            stream_version=1, occurred_at=when, actor=actor, correlation_id=str(uuid.uuid4()),
                            event_id=event_id, recorded_at=when)
        payload = envelope.encode(env)
        await self.raw(event_subject(event.community, type(event).service, type(event).type_name), payload,
                       env.event_id)
        return payload

    async def raw(self, subject: str, payload: bytes, msg_id: str | None = None) -> int:
        ack = await self.js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id or str(uuid.uuid4())})
        self.last_seq = ack.seq
        self.sent.append(payload)
        return ack.seq


def ev(cls, when: datetime, community: str = C, **fields):
    """An event with its *_at fields at ``when`` and *_by fields set to the actor staff:li-wei."""
    values = {f: when for f in cls.__struct_fields__ if f.endswith("_at")}
    values.update({f: "staff:li-wei" for f in cls.__struct_fields__ if f.endswith("_by")})
    return cls(community=community, **{**values, **fields})


async def query(nc, view: str, **fields) -> dict:
    msg = await nc.request(f"cordon.qry.{view}", json.dumps(fields).encode(), timeout=5)
    return json.loads(msg.data)


async def wait_position(nc, seq: int, timeout: float = 10.0) -> None:
    """Until the views' position (the last stream sequence applied) reaches ``seq``."""
    deadline = asyncio.get_running_loop().time() + timeout
    reply: dict = {}
    while True:
        try:
            reply = await query(nc, "rollup", scope="city", on="2020-02-17")
        except nats.errors.NoRespondersError:  # the service's subscriptions are not at the server yet
            pass
        if reply.get("position", 0) >= seq:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"views did not reach {seq}: {reply.get('position')}")
        await asyncio.sleep(0.03)


@dataclass
class Day:
    """What the scripted day should show: the board of C on D and on the day before, and of C2 on D."""

    boards: dict = field(default_factory=dict)
    last_seq: int = 0


async def scripted_day(s: Stream) -> Day:
    """A day in Nangong committee (and a little in Wanli and in Jing'an), across two calendar days."""
    y = D - timedelta(days=1)
    p = s.publish
    await p(ev(rg.CompoundRegistered, at(y, 8), compound="nangong-1", name="南宫小区", buildings=["b1", "b2"],
               gates=["g1", "g2"]))
    for h in ("h1", "h2", "h3"):
        await p(ev(rg.HouseholdRegistered, at(y, 8, 5), compound="nangong-1", building="b1", household=h))
    for i, h in enumerate(("h1", "h1", "h2", "h3", "h3"), 1):
        await p(ev(rg.ResidentRegistered, at(y, 8, 10), compound="nangong-1", building="b1", household=h,
                   resident=f"r{i}", display_name="王*伟"))
    await p(ev(rg.ResidentMovedOut, at(D, 10), resident="r5", household="h3", compound="nangong-1", building="b1"),
            actor="staff:zhao")
    arrival = dict(compound="nangong-1", building="b1")
    await p(ev(rg.ArrivalRegistered, at(y, 9), arrival="a1", resident="r1", household="h1", arrived_on=D - timedelta(days=3),
               city_class="A", risk_area_visited=True, requires_verification=True, **arrival))
    await p(ev(rg.ArrivalRegistered, at(y, 9), arrival="a2", resident="r2", household="h1", arrived_on=D - timedelta(days=20),
               city_class="B", risk_area_visited=False, requires_verification=False, **arrival))
    await p(ev(rg.ArrivalRegistered, at(D, 9), arrival="a3", resident="r3", household="h2", arrived_on=D,
               city_class="A", risk_area_visited=True, requires_verification=True, **arrival))
    await p(ev(rg.ArrivalVerified, at(D, 11), arrival="a3", resident="r3", household="h2", compound="nangong-1",
               building="b1", outcome="home_quarantine", documents_checked=True), actor="staff:zhao")
    # Issued the day before in schema 1 (the printed number in the event), revoked today in schema 2:
    # the views read both.
    for i, h in enumerate(("h1", "h2", "h3")):
        await p(ev(cp.PassIssuedV1, at(y, 12), pass_=f"pass-{i}", number=f"N{i}", compound="nangong-1", household=h))
    await p(ev(cp.PassRevoked, at(D, 12), pass_="pass-2", compound="nangong-1", household="h3", reason="lost"))
    passage = dict(compound="nangong-1", gate="g1", temperature_c=36.5, resident="r1", household="h1")
    for _ in range(5):
        await p(ev(cp.PassageAllowed, at(y, 18), passage=str(uuid.uuid4()), direction="in", **passage), actor="staff:guard")
    await p(ev(cp.PassageAllowed, datetime(2020, 2, 16, 23, 30, tzinfo=timezone.utc),  # 07:30 on D in Shanghai
               passage=str(uuid.uuid4()), direction="in", **passage), actor="staff:guard")
    for _ in range(3):
        await p(ev(cp.PassageAllowed, at(D, 8), passage=str(uuid.uuid4()), direction="in", **passage), actor="staff:guard")
        await p(ev(cp.PassageAllowed, at(D, 17), passage=str(uuid.uuid4()), direction="out", **passage), actor="staff:guard")
    await p(ev(cp.PassageDenied, at(D, 9), passage="p-fever", direction="in", reason="fever",
               **{**passage, "temperature_c": 38.2, "resident": "r2"}), actor="staff:guard")
    await p(ev(cp.FeverDetected, at(D, 9), passage="p-fever", compound="nangong-1", gate="g1", temperature_c=38.2,
               resident="r2", household="h1"), actor="staff:guard")
    await p(ev(cp.PassageDenied, at(D, 19), passage="p-q", direction="out", reason="under_quarantine",
               **{**passage, "resident": "r3"}), actor="staff:guard")
    case = dict(household="h1", compound="nangong-1", building="b1", reason="arrival")
    await p(ev(qa.CaseOpened, at(D, 11, 5), case="k1", resident="r3", kind="home", starts_on=D,
               ends_on=D + timedelta(days=13), **case), actor="system:arrival-quarantine")
    await p(ev(qa.CaseOpened, at(y, 11), case="k2", resident="r1", kind="centralized", starts_on=y,
               ends_on=y + timedelta(days=13), **case))
    await p(ev(qa.CaseTransferred, at(D, 14), case="k2", resident="r1", to="hospital"))
    await p(ev(qa.CaseOpened, at(y, 11), case="k3", resident="r4", kind="monitoring", starts_on=y,
               ends_on=y + timedelta(days=6), **case))
    await p(ev(qa.CaseClosed, at(D, 15), case="k3", resident="r4", on=D))
    await p(ev(qa.AreaSealed, at(y, 20), compound="nangong-1"))
    await p(ev(qa.SealLifted, at(D, 7), compound="nangong-1"))
    await p(ev(qa.AreaSealed, at(D, 16), compound="nangong-1", building="b2"))
    request = dict(household="h2", compound="nangong-1", building="b1", kind="food",
                   items=[lg.ItemLine(item="vegetable-pack", qty=1)], priority=32)
    for q in ("q1", "q2", "q3"):
        await p(ev(lg.SupplyRequested, at(D, 8), request=q, **request))
    await p(ev(lg.DeliveryCompleted, at(D, 10), request="q2", household="h2", volunteer="v1", items=[], attempt=1),
            actor="volunteer:v1")
    await p(ev(lg.DeliveryFailed, at(D, 10), request="q3", household="h2", volunteer="v1", outcome="refused",
               attempt=1), actor="volunteer:v1")
    await p(ev(lg.WelfareCheckRaised, at(D, 10), check="w1", household="h3", compound="nangong-1", building="b1",
               request="q3", vulnerabilities=["elderly_alone"]))
    await p(ev(lg.StockReceived, at(D, 9), receipt="rc1", source="donation",
               items=[lg.StockLine(item="masks", qty=100, on_hand=100), lg.StockLine(item="heater", qty=2, on_hand=2)]))
    await p(ev(lg.StockConsumed, at(D, 12), household="h2", items=[lg.StockLine(item="masks", qty=30, on_hand=70)],
               request="q2"))
    # Wanli: two households, a resident, passages; Jing'an: one resident.
    for h in ("w-h1", "w-h2"):
        await p(ev(rg.HouseholdRegistered, at(y, 8), C2, compound="wanli-1", building="b1", household=h))
    await p(ev(rg.ResidentRegistered, at(y, 8), C2, compound="wanli-1", building="b1", household="w-h1",
               resident="w-r1", display_name="李*"))
    for direction in ("in", "in", "out"):
        await p(ev(cp.PassageAllowed, at(D, 8), C2, passage=str(uuid.uuid4()), direction=direction,
                   compound="wanli-1", gate="g1", temperature_c=36.4, resident="w-r1"), actor="staff:guard")
    await p(ev(qa.CaseOpened, at(D, 9), C2, case="w-k1", resident="w-r1", kind="home", starts_on=D,
               ends_on=D + timedelta(days=13), reason="close_contact"))
    await p(ev(lg.StockReceived, at(D, 9), C2, receipt="rc2", source="allocation",
               items=[lg.StockLine(item="masks", qty=40, on_hand=40)]))
    await p(ev(rg.ResidentRegistered, at(y, 8), C3, compound="wuzhou-1", building="b1", household="j-h1",
               resident="j-r1", display_name="张*"))
    return Day(boards=expected_boards(), last_seq=s.last_seq)


def expected_boards() -> dict:
    zero = {"home": 0, "centralized": 0, "monitoring": 0, "hospital": 0, "total": 0}
    return {
        (C, D): {
            "residents": 4, "households": 3,
            "arrivals": {"last_14_days": 2, "pending_verification": 1},
            "in_quarantine": {**zero, "home": 1, "hospital": 1, "total": 2},
            "sealed_areas": {"compounds": 0, "buildings": 1},
            "active_passes": 2,
            "passages_today": {"in": 4, "out": 3, "denied": 2},
            "fevers_today": 1, "checkins_missed_today": 0, "positive_results_today": 0,
            "open_requests": 1, "deliveries_today": 1, "welfare_checks_open": 1,
            "households_on_daily_supply": 0,
            "stock": {"heater": 2, "masks": 70},
        },
        (C, D - timedelta(days=1)): {
            "residents": 5, "households": 3,
            "arrivals": {"last_14_days": 1, "pending_verification": 1},
            "in_quarantine": {**zero, "centralized": 1, "monitoring": 1, "total": 2},
            "sealed_areas": {"compounds": 1, "buildings": 0},
            "active_passes": 3,
            "passages_today": {"in": 5, "out": 0, "denied": 0},
            "fevers_today": 0, "checkins_missed_today": 0, "positive_results_today": 0,
            "open_requests": 0, "deliveries_today": 0, "welfare_checks_open": 0,
            "households_on_daily_supply": 0, "stock": {},
        },
        (C2, D): {
            "residents": 1, "households": 2,
            "arrivals": {"last_14_days": 0, "pending_verification": 0},
            "in_quarantine": {**zero, "home": 1, "total": 1},
            "sealed_areas": {"compounds": 0, "buildings": 0},
            "active_passes": 0,
            "passages_today": {"in": 2, "out": 1, "denied": 0},
            "fevers_today": 0, "checkins_missed_today": 0, "positive_results_today": 0,
            "open_requests": 0, "deliveries_today": 0, "welfare_checks_open": 0,
            "households_on_daily_supply": 0, "stock": {"masks": 40},
        },
    }


BOARD_KEYS = tuple(expected_boards()[(C, D)])


def shown(reply: dict) -> dict:
    """The board's figures from a reply (without ok, community, on, position, figures)."""
    return {k: reply[k] for k in BOARD_KEYS}
