"""`cordon feed`'s lines: given a recorded event (built from the contract's own classes, so a
renamed field shows here), then one line with the city's local time, the type, a masked subject
and a summary that says what happened; never a name, ID number or pass number."""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.web import lines
from shared import envelope as env
from shared.contracts import checkpoint as cp
from shared.contracts import logistics as lg
from shared.contracts import quarantine as qa
from shared.contracts import registry as rg

C = "changning.chengjiaqiao.nangong"
SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 30, 1, 14, 2, tzinfo=timezone.utc)  # 09:14:02 in Shanghai
BY = "staff:li-wei"
RESIDENT = "4f1c2a9e-5b7d-4c3e-9a1b-2c3d4e5f6a7b"


def recorded(cls, **fields) -> dict:
    """The envelope of an event of ``cls`` as a feed client receives it (decoded JSON); every
    ``*_at`` and ``*_by`` field filled."""
    values = {f: AT for f in cls.__struct_fields__ if f.endswith("_at")}
    values.update({f: BY for f in cls.__struct_fields__ if f.endswith("_by")})
    event = cls(community=C, **{**values, **fields})
    wrapped = env.wrap(event, stream_id="s-1", stream_version=1, occurred_at=AT, actor=BY, correlation_id="c-1")
    return json.loads(env.encode(wrapped))


def line(cls, **fields) -> str:
    return lines.line(recorded(cls, **fields), SHANGHAI)


def test_a_line_has_the_local_time_the_type_the_subject_and_what_happened():
    text = line(cp.PassageDenied, passage="p-1", compound="nangong-1", gate="g1", direction="in",
                temperature_c=38.5, reason="fever", resident=RESIDENT, household="h-1")
    assert text.startswith("2026-11-30 09:14:02  PassageDenied ")
    assert text.split()[3] == "4f1c2a9e"  # a UUID shown by its first 8 digits
    assert text.endswith("denied in at nangong-1/g1, 38.5°C: fever")


def test_the_time_is_the_city_zones():
    assert line(qa.CheckinMissed, case="k1", resident="r1", on=date(2026, 11, 29)).startswith("2026-11-30 09:14:02")
    utc = lines.line(recorded(qa.CheckinMissed, case="k1", resident="r1", on=date(2026, 11, 29)), ZoneInfo("UTC"))
    assert utc.startswith("2026-11-30 01:14:02")


def test_the_subject_is_a_masked_name_before_any_id():
    text = line(rg.ResidentRegistered, compound="nangong-1", building="b1", household="h-101", resident=RESIDENT,
                display_name="王*伟", vulnerabilities=["elderly_alone"])
    assert "王*伟" in text and RESIDENT[:8] not in text
    assert text.endswith("registered in h-101 at nangong-1/b1; elderly_alone")
    visitor = line(cp.PassageAllowed, passage="p-2", compound="nangong-1", gate="g1", direction="in",
                   temperature_c=36.4, visitor="张*", household="h-101")
    assert visitor.split()[3] == "张*" and visitor.endswith("allowed visitor in at nangong-1/g1, 36.4°C")


def test_columns_line_up_with_chinese_names():
    # 王*伟 is 3 characters but 5 terminal columns; J*** S**** 10 of each.
    a = line(rg.ResidentRegistered, compound="n", building="b", household="h", resident="r", display_name="王*伟")
    b = line(rg.ResidentRegistered, compound="n", building="b", household="h", resident="r", display_name="J*** S****")
    assert columns(a[:a.index("registered in")]) == columns(b[:b.index("registered in")])


def columns(text: str) -> int:
    return len(lines.pad(text, 0)) + sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")


REGISTRY = [
    (rg.CompoundRegistered, dict(compound="nangong-1", name="南宫小区", buildings=["b1", "b2"], gates=["g1"]),
     "nangong-1", "南宫小区 (nangong-1): 2 buildings, 1 gates"),
    (rg.HouseholdRegistered, dict(compound="nangong-1", building="b1", household="h-101"),
     "h-101", "household registered at nangong-1/b1"),
    (rg.ArrivalRegistered, dict(arrival="a-1", resident="r-1", household="h-101", compound="nangong-1", building="b1",
                                arrived_on=date(2026, 11, 29), city_class="A",
                                risk_area_visited=True, requires_verification=True),
     "r-1", "arrived 2026-11-29, class A, visited a risk area; to verify at the door"),
    (rg.ArrivalVerified, dict(arrival="a-1", resident="r-1", household="h-101", compound="nangong-1", building="b1",
                              outcome="home_quarantine", documents_checked=True),
     "r-1", "verified: home_quarantine"),
    (rg.ResidentMovedOut, dict(resident="r-1", household="h-101", compound="nangong-1", building="b1",
                               reason="left the city"), "r-1", "moved out of h-101: left the city"),
    (rg.IdentityGranted, dict(identity="nangong-east", role="gate", scope=C, acts_in=C, compound="nangong-1",
                              public_key="UABCDEF"), "nangong-east",
     f"identity granted: gate of {C} at nangong-1"),
    (rg.IdentityRevoked, dict(identity="li-wei", public_key="UABCDEF", reason="left the committee"), "li-wei",
     "identity revoked: left the committee"),
    (rg.ResidentUpdated, dict(resident="r-1", household="h-101", compound="nangong-1", building="b1",
                              vulnerabilities=[]), "r-1", "vulnerabilities now none"),
    (rg.CallRecorded, dict(call="c-1", resident="r-1", household="h-101", compound="nangong-1", building="b1",
                           arrival="a-1", outcome="no_answer"), "r-1", "screening call about arrival a-1: no_answer"),
    (rg.TipOffRecorded, dict(tip_off="t-1", compound="nangong-1", building="b2", kind="gathering"), "nangong-1",
     "tip-off: gathering at nangong-1/b2"),
    (rg.TipOffFollowedUp, dict(tip_off="t-1", compound="nangong-1", household="h-101", outcome="unfounded"),
     "h-101", "tip-off followed up at nangong-1: unfounded"),
]
CHECKPOINT = [
    (cp.GateClosed, dict(compound="nangong-1", gate="g1"), "nangong-1", "gate g1 of nangong-1 closed"),
    (cp.ControlLevelSet, dict(compound="nangong-1", level="sealed", previous="closed"), "nangong-1",
     "nangong-1: closed → sealed"),
    (cp.PassIssued, dict(pass_="pass-1", compound="nangong-1", household="h-101"), "h-101",
     "pass issued to h-101"),
    (cp.PassRevoked, dict(pass_="pass-1", compound="nangong-1", household="h-101", reason="lost",
                          replaced_by="pass-2"), "h-101", "pass revoked: lost, replaced by pass-2"),
    (cp.PassageAllowed, dict(passage="p-1", compound="nangong-1", gate="g1", direction="out", temperature_c=36.5,
                             resident="r-1", pass_="pass-1", pass_shown=True), "r-1",
     "allowed out at nangong-1/g1, 36.5°C"),
    (cp.FeverDetected, dict(passage="p-1", compound="nangong-1", gate="g1", temperature_c=38.5, resident="r-1",
                            threshold_c=37.3), "r-1", "fever 38.5°C at nangong-1/g1 (threshold 37.3°C)"),
    (cp.ShiftEnded, dict(shift="s-1", compound="nangong-1", gate="g1", staff="li-wei", hours=8.0), "nangong-1",
     "li-wei off shift at nangong-1/g1 after 8.0 h"),
    # issue 17: where to, vehicles, the drop point
    (cp.PassageAllowed, dict(passage="p-2", compound="nangong-1", gate="g1", direction="out", temperature_c=36.5,
                             resident="r-1", destination="medical"), "r-1",
     "allowed out at nangong-1/g1, 36.5°C, going to medical"),
    (cp.VehicleAllowed, dict(vehicle="v-1", compound="nangong-1", gate="g1", direction="out", purpose="resident",
                             driver="r-1", passengers=["r-2"]), "nangong-1",
     "resident vehicle out at nangong-1/g1, 2 resident(s) aboard"),
    (cp.VehicleDenied, dict(vehicle="v-2", compound="nangong-1", gate="g1", direction="out", purpose="resident",
                            reason="under_quarantine", resident="r-2", driver="r-1", passengers=["r-2"]), "r-2",
     "resident vehicle turned back out at nangong-1/g1: under_quarantine (r-2)"),
    (cp.ParcelDropped, dict(parcel="pk-1", compound="nangong-1", gate="g1", household="h-101", kind="takeaway"),
     "h-101", "takeaway left at nangong-1/g1 for h-101"),
    (cp.ParcelCollected, dict(parcel="pk-1", compound="nangong-1", gate="g1", household="h-101", kind="groceries",
                              volunteer="volunteer:zhang-min"), "h-101",
     "groceries collected at nangong-1/g1, carried to the door by volunteer:zhang-min"),
]
QUARANTINE = [
    (qa.CaseOpened, dict(case="k-1", resident="r-1", household="h-101", kind="home", reason="arrival",
                         starts_on=date(2026, 11, 30), ends_on=date(2026, 12, 13)), "r-1",
     "home case opened (arrival), 2026-11-30 to 2026-12-13"),
    (qa.CheckinRecorded, dict(case="k-1", resident="r-1", on=date(2026, 11, 30)), "r-1", "check-in 2026-11-30"),
    (qa.SymptomsReported, dict(case="k-1", resident="r-1", on=date(2026, 11, 30), fever=True, symptomatic=True),
     "r-1", "abnormal check-in 2026-11-30: fever, symptoms"),
    (qa.CheckinMissed, dict(case="k-1", resident="r-1", household="h-101", on=date(2026, 11, 30)), "r-1",
     "check-in of 2026-11-30 missed"),
    (qa.CaseTransferred, dict(case="k-1", resident="r-1", to="hospital"), "r-1", "transferred to hospital"),
    (qa.CaseReleased, dict(case="k-1", resident="r-1", on=date(2026, 12, 13), monitoring_until=date(2026, 12, 20)),
     "r-1", "released 2026-12-13, monitoring until 2026-12-20"),
    (qa.CaseClosed, dict(case="k-1", resident="r-1", on=date(2026, 12, 20)), "r-1", "case closed 2026-12-20"),
    (qa.AreaSealed, dict(compound="nangong-1"), "nangong-1", "nangong-1 (whole compound) sealed"),
    (qa.SealLifted, dict(compound="nangong-1", building="b2"), "nangong-1", "seal of nangong-1/b2 lifted"),
    (qa.ScreeningScheduled, dict(screening="sc-1", compound="nangong-1", on=date(2026, 12, 1),
                                 slots=[qa.Slot(label="students", from_=time(7), to=time(8))]), "nangong-1",
     "screening 2026-12-01 at nangong-1, students 07:00-08:00"),
    (qa.SampleTaken, dict(screening="sc-1", resident="r-1", slot="students"), "r-1",
     "sample taken (students)"),
    (qa.SampleTaken, dict(screening="sc-1", resident="r-1", stay_in_until_result=True), "r-1",
     "sample taken; stays in until the result"),
    (qa.SampleCodesIssued, dict(screening="sc-1", compound="nangong-1", count=41), "nangong-1",
     "41 sample codes printed for screening sc-1"),
    (qa.AreaSealed, dict(compound="nangong-1", building="b2", until=date(2022, 3, 28)), "nangong-1",
     "nangong-1/b2 sealed until 2022-03-28"),
    (qa.SealExtended, dict(compound="nangong-1", until=date(2022, 3, 30), screening="sc-1"), "nangong-1",
     "seal of nangong-1 (whole compound) extended to 2022-03-30 for screening sc-1"),
    (qa.ResultRecorded, dict(screening="sc-1", resident="r-1", result="positive", case="k-2"), "r-1",
     "result positive, case opened"),
]
LOGISTICS = [
    (lg.SupplyRequested, dict(request="q-1", household="h-101", compound="nangong-1", building="b1", kind="food",
                              items=[lg.ItemLine(item="vegetable-pack", qty=2)], priority=48,
                              priority_reasons=["quarantined", "elderly_alone"]), "h-101",
     "food requested: vegetable-pack×2, priority 48 (quarantined, elderly_alone)"),
    (lg.DeliveryAssigned, dict(request="q-1", household="h-101", volunteer="v-7",
                               items=[lg.ItemLine(item="rice", qty=1)], attempt=1), "h-101",
     "assigned to v-7, attempt 1: rice×1"),
    (lg.DeliveryCompleted, dict(request="q-1", household="h-101", volunteer="v-7",
                                items=[lg.ItemLine(item="rice", qty=1)], attempt=1), "h-101",
     "delivered by v-7: rice×1"),
    (lg.DeliveryFailed, dict(request="q-1", household="h-101", volunteer="v-7", outcome="no_answer", attempt=1,
                             welfare_check="w-1"), "h-101", "delivery failed (no answer), attempt 1, welfare check"),
    (lg.WelfareCheckRaised, dict(check="w-1", household="h-101", compound="nangong-1", building="b1", request="q-1",
                                 vulnerabilities=["elderly_alone"]), "h-101",
     "welfare check needed at nangong-1/b1: elderly_alone"),
    (lg.WelfareCheckResolved, dict(check="w-1", household="h-101", outcome="safe"), "h-101", "welfare check: safe"),
    (lg.StockReceived, dict(receipt="rc-1", items=[lg.StockLine(item="masks", qty=500, on_hand=800)],
                            source="donation", from_="Red Cross"), "-",
     "stock in (donation, Red Cross): masks×500 (on hand 800)"),
    (lg.MasksReserved, dict(household="h-101", voucher="vo-1", number="123456789", qty=5,
                            period_start=date(2026, 11, 30), period_end=date(2026, 12, 6), reserved_in_period=5,
                            limit=10), "h-101", "5 masks reserved (5/10 2026-11-30 to 2026-12-06)"),
    (lg.VoucherRedeemed, dict(household="h-101", voucher="vo-1", number="123456789", qty=5), "h-101",
     "mask voucher redeemed: 5 masks"),
    (lg.DailySupplyStopped, dict(household="h-101", cause="case:k-1", causes=["seal:nangong-1"], active=True),
     "h-101", "daily food: case:k-1 over, still seal:nangong-1"),
]


@pytest.mark.parametrize("cls, fields, subject, says", REGISTRY + CHECKPOINT + QUARANTINE + LOGISTICS,
                         ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_each_services_main_events_say_what_happened(cls, fields, subject, says):
    text = line(cls, **fields)
    assert text.split()[2] == cls.type_name
    assert text.split()[3] == subject
    assert text.endswith(says), text


def test_no_secret_is_printed_even_from_an_event_that_carries_it():
    # A schema-1 pass event (recorded before pass numbers left the bus) and a mask voucher carry a
    # printed number: whoever reads it uses the pass or the voucher.
    old = line(cp.PassageDeniedV1, passage="p-1", compound="nangong-1", gate="g1", direction="in",
               temperature_c=36.5, reason="no_valid_pass", number="7KQ2M9XW4C")
    assert "7KQ2M9XW4C" not in old and old.endswith("no_valid_pass")
    voucher = line(lg.VoucherRedeemed, household="h-101", voucher="vo-1", number="123456789", qty=5)
    assert "123456789" not in voucher
    sample = line(qa.SampleTakenV1, screening="sc-1", resident="r-1", code="SECRET-CODE")
    assert "SECRET-CODE" not in sample


def test_an_old_registry_event_prints_without_the_address_or_birth_year_it_carries():
    # Given schema-1 events recorded before the address and birth year left the bus (issue 16)
    household = line(rg.HouseholdRegisteredV1, compound="nangong-1", building="b1", household="h-101",
                     address="南宫小区1号101室")
    resident = line(rg.ResidentRegisteredV1, compound="nangong-1", building="b1", household="h-101",
                    resident="r-1", display_name="王*伟", birth_year=1941)
    # then the feed says what happened, as for schema 2, and neither is printed
    assert household.endswith("household registered at nangong-1/b1") and "101室" not in household
    assert resident.endswith("registered in h-101 at nangong-1/b1") and "1941" not in resident
    # nor when the summary falls back to the plain fields
    envelope = recorded(rg.HouseholdRegisteredV1, compound="nangong-1", building="b1", household="h-101",
                        address="南宫小区1号101室")
    del envelope["data"]["building"]
    assert "101室" not in lines.line(envelope, SHANGHAI)


def test_a_type_not_known_here_still_prints_its_plain_fields():
    envelope = recorded(qa.CheckinMissed, case="k-1", resident="r-1", on=date(2026, 11, 30))
    envelope.update(type="CurfewAnnounced", data={"compound": "nangong-1", "from": "22:00", "number": "X1",
                                                  "announced_at": "2026-11-30T01:00:00Z", "announced_by": BY,
                                                  "community": C, "notes": None})
    text = lines.line(envelope, SHANGHAI)
    assert text.split()[2:4] == ["CurfewAnnounced", "nangong-1"]
    assert text.endswith("compound=nangong-1 from=22:00")


def test_a_known_type_with_a_field_gone_falls_back_to_its_plain_fields():
    envelope = recorded(qa.CheckinMissed, case="k-1", resident="r-1", on=date(2026, 11, 30))
    del envelope["data"]["on"]
    assert lines.line(envelope, SHANGHAI).endswith("case=k-1 resident=r-1")


def test_an_envelope_without_data_or_time_still_prints():
    text = lines.line({"type": "Something", "occurred_at": "not a time"}, SHANGHAI)
    assert text.split()[:3] == ["not", "a", "time"] and "Something" in text
    assert lines.line({"type": "X", "occurred_at": (AT - timedelta(hours=1)).isoformat(), "data": None},
                      SHANGHAI).startswith("2026-11-30 08:14:02  X")


def test_an_old_check_in_prints_without_the_temperature_or_symptoms_it_carries():
    # Given schema-1 check-ins recorded before the readings left the bus (issue 16)
    fields = dict(case="k-1", resident="r-1", on=date(2026, 11, 30), temperature_c=38.6, symptoms=["cough"])
    checkin, abnormal = line(qa.CheckinRecordedV1, **fields), line(qa.SymptomsReportedV1, **fields)
    # then the feed says what happened, and neither reading is printed
    assert checkin.endswith("check-in 2026-11-30") and abnormal.endswith("abnormal check-in 2026-11-30")
    assert not any(x in text for x in ("38.6", "cough") for text in (checkin, abnormal))
    # nor when the summary falls back to the plain fields
    envelope = recorded(qa.CheckinRecordedV1, **fields)
    del envelope["data"]["on"]
    assert "38.6" not in lines.line(envelope, SHANGHAI)


def test_an_old_arrival_prints_without_its_travel_history():
    # Given a schema-1 arrival, recorded before the origin, train and places visited left the bus
    old = line(rg.ArrivalRegisteredV1, arrival="a-1", resident="r-1", household="h-101", compound="nangong-1",
               building="b1", origin="Wuhan", arrived_on=date(2026, 11, 29),
               transport=rg.Transport(kind="train", number="G1722"),
               visited=[rg.Visit(place="Hankou", from_=date(2026, 11, 20), to=date(2026, 11, 28))],
               city_class="A", risk_area_visited=True, requires_verification=True)
    # then the feed says what happened, as for schema 2, and none of it is printed
    assert old.endswith("arrived 2026-11-29, class A, visited a risk area; to verify at the door")
    assert not any(x in old for x in ("Wuhan", "G1722", "Hankou"))


def test_group_orders_volunteers_and_visits_say_what_happened():
    placed = line(lg.GroupOrderPlaced, order="o-1", compound="nangong-1", supplier="盒马鲜生",
                  items=[lg.OrderLine(item="vegetable-box", qty=3)], households=3)
    assert placed.endswith("group order o-1 from 盒马鲜生: vegetable-box×3 for 3 households")
    done = line(lg.GroupOrderHandedOut, order="o-1", compound="nangong-1", building="b2", households=1,
                handed_out=3, complete=True)
    assert done.endswith("group order o-1 handed out in b2: 1 households, 3 in all, done")
    hours = line(lg.VolunteerHoursRecorded, volunteer="volunteer:zhang-3", on=date(2026, 11, 30),
                 kind="door_to_door", hours=1.5, team="party-branch-3")
    assert hours.endswith("volunteer:zhang-3: 1.5 h door to door on 2026-11-30, team party-branch-3")
    visit = line(lg.VisitRecorded, household="h-101", compound="nangong-1", building="b1", outcome="no_answer")
    assert " h-101 " in visit and visit.endswith("door-to-door visit: no answer")
