"""Public events of the quarantine service.

The checkpoint (gate blocks) and logistics (daily food requests) react to CaseOpened, CaseClosed,
AreaSealed and SealLifted; their fields are a promise to those consumers.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Literal

import msgspec

from shared.envelope import Event, event_type

SERVICE = "quarantine"
CaseKind = Literal["home", "centralized", "monitoring"]
CaseReason = Literal["arrival", "close_contact", "fever", "positive_test"]
TransferTo = Literal["centralized", "hospital"]
TestResult = Literal["negative", "positive"]


class Slot(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
           rename={"from_": "from"}):
    """A time slot of a screening round, e.g. {"label": "students", "from": "07:00", "to": "08:00"}."""

    label: str
    from_: time
    to: time


@event_type(SERVICE)
class CaseOpened(Event, frozen=True, kw_only=True):
    case: str
    resident: str
    #: Where the resident lives, when the registry knows: what gates and deliveries key on.
    household: str | None = None
    compound: str | None = None
    building: str | None = None
    kind: CaseKind
    reason: CaseReason
    starts_on: date
    #: Planned last day under the policy's duration for this kind.
    ends_on: date
    opened_at: datetime
    opened_by: str
    #: The first day a daily check-in is due (the start day, or the next day when the case was
    #: opened after the policy's check-in hour).
    checkins_due_from: date | None = None


@event_type(SERVICE, schema=2)
class CheckinRecorded(Event, frozen=True, kw_only=True):
    """A resident under a case checked in (schema 2: the temperature and symptoms stay in
    ``quarantine.checkins``; a SymptomsReported follows an abnormal one)."""

    case: str
    resident: str
    on: date
    recorded_at: datetime
    recorded_by: str


@event_type(SERVICE, schema=2)
class SymptomsReported(Event, frozen=True, kw_only=True):
    """A check-in was abnormal (schema 2: why, not what: the readings stay in ``quarantine.checkins``)."""

    case: str
    resident: str
    on: date
    #: The temperature was at or over the service's fever threshold.
    fever: bool
    #: At least one symptom was reported.
    symptomatic: bool
    reported_at: datetime
    reported_by: str


@event_type(SERVICE)
class CheckinMissed(Event, frozen=True, kw_only=True):
    case: str
    resident: str
    household: str | None = None
    on: date
    missed_at: datetime
    missed_by: str


@event_type(SERVICE)
class CaseTransferred(Event, frozen=True, kw_only=True):
    case: str
    resident: str
    household: str | None = None
    to: TransferTo
    transferred_at: datetime
    transferred_by: str
    #: The day of the transfer.
    on: date | None = None
    #: Set when the transfer starts a new quarantine period (from monitoring or hospital to
    #: centralized quarantine): its planned last day.
    ends_on: date | None = None


@event_type(SERVICE)
class CaseReleased(Event, frozen=True, kw_only=True):
    """Home or centralized quarantine ends; the case goes on as health monitoring until ``monitoring_until``."""

    case: str
    resident: str
    household: str | None = None
    compound: str | None = None
    building: str | None = None
    on: date
    monitoring_until: date
    released_at: datetime
    released_by: str


@event_type(SERVICE)
class CaseClosed(Event, frozen=True, kw_only=True):
    case: str
    resident: str
    household: str | None = None
    compound: str | None = None
    building: str | None = None
    on: date
    closed_at: datetime
    closed_by: str


@event_type(SERVICE)
class AreaSealed(Event, frozen=True, kw_only=True):
    """A building, or with ``building`` None the whole compound, is sealed (封控): nobody leaves."""

    compound: str
    building: str | None = None
    sealed_at: datetime
    sealed_by: str
    #: The planned last day of the seal (the day it may be lifted after), when one is set: a new
    #: screening round of the compound moves it later (SealExtended).
    until: date | None = None


@event_type(SERVICE)
class SealLifted(Event, frozen=True, kw_only=True):
    compound: str
    building: str | None = None
    lifted_at: datetime
    lifted_by: str


@event_type(SERVICE)
class SealExtended(Event, frozen=True, kw_only=True):
    """A seal's planned last day moved later: by staff (``extend_seal``) or by a new screening round
    of the compound (``screening`` names it)."""

    compound: str
    building: str | None = None
    until: date
    #: The planned last day before (None: the seal had none).
    previous_until: date | None = None
    screening: str | None = None
    extended_at: datetime
    extended_by: str


@event_type(SERVICE)
class ScreeningScheduled(Event, frozen=True, kw_only=True):
    screening: str
    compound: str
    on: date
    slots: list[Slot]
    scheduled_at: datetime
    scheduled_by: str
    #: The residents sampled in this round stay in until their result is back (the gate denies
    #: them going out: ``awaiting_result``).
    stay_in_until_result: bool = False


@event_type(SERVICE)
class SampleCodesIssued(Event, frozen=True, kw_only=True):
    """Registration codes printed ahead of a round: how many, never which (a code on a slip is a
    credential; the codes stay in ``quarantine.sample_codes``)."""

    screening: str
    compound: str
    building: str | None = None
    count: int
    issued_at: datetime
    issued_by: str


@event_type(SERVICE, schema=2)
class SampleTaken(Event, frozen=True, kw_only=True):
    """A resident's sample taken in a screening round (schema 2: without the registration code
    printed for the resident, which stays in ``quarantine.samples``)."""

    screening: str
    resident: str
    taken_at: datetime
    taken_by: str
    compound: str | None = None
    #: The label of the round's time slot the sample was taken in (e.g. "students").
    slot: str | None = None
    #: The resident stays in until the result is back (the round's rule, or this sample's).
    stay_in_until_result: bool = False


@event_type(SERVICE)
class ResultRecorded(Event, frozen=True, kw_only=True):
    screening: str
    resident: str
    result: TestResult
    recorded_at: datetime
    recorded_by: str
    compound: str | None = None
    #: The case a positive result opened (None when the resident already had an open case).
    case: str | None = None


# -- schema 1: recorded before the check-ins' readings and the sample codes left the bus; decoded,
#    never recorded now --

#: The fever threshold of a service on its default settings: what an upcast of a schema-1 check-in
#: takes as fever (the service's own threshold then is not in the event).
DEFAULT_FEVER_C = 37.3


@event_type(SERVICE, schema=1, name="CheckinRecorded")
class CheckinRecordedV1(Event, frozen=True, kw_only=True):
    """CheckinRecorded schema 1: it carried the temperature and the symptoms."""

    case: str
    resident: str
    on: date
    temperature_c: float
    symptoms: list[str] = []
    recorded_at: datetime
    recorded_by: str

    def upcast(self) -> CheckinRecorded:
        return CheckinRecorded(community=self.community, case=self.case, resident=self.resident, on=self.on,
                               recorded_at=self.recorded_at, recorded_by=self.recorded_by)


@event_type(SERVICE, schema=1, name="SymptomsReported")
class SymptomsReportedV1(Event, frozen=True, kw_only=True):
    """SymptomsReported schema 1: it carried the temperature and the symptoms."""

    case: str
    resident: str
    on: date
    temperature_c: float
    symptoms: list[str] = []
    reported_at: datetime
    reported_by: str

    def upcast(self) -> SymptomsReported:
        # Reported for a fever or a symptom: without a symptom it was the fever (whatever the threshold).
        fever = self.temperature_c >= DEFAULT_FEVER_C or not self.symptoms
        return SymptomsReported(community=self.community, case=self.case, resident=self.resident, on=self.on,
                                fever=fever, symptomatic=bool(self.symptoms), reported_at=self.reported_at,
                                reported_by=self.reported_by)


@event_type(SERVICE, schema=1, name="SampleTaken")
class SampleTakenV1(Event, frozen=True, kw_only=True):
    """SampleTaken schema 1: it carried the registration code printed for the resident."""

    screening: str
    resident: str
    code: str | None = None
    taken_at: datetime
    taken_by: str
    compound: str | None = None
    slot: str | None = None

    def upcast(self) -> SampleTaken:
        return SampleTaken(community=self.community, screening=self.screening, resident=self.resident,
                           taken_at=self.taken_at, taken_by=self.taken_by, compound=self.compound, slot=self.slot)
