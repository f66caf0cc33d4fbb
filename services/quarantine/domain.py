"""The quarantine service's aggregates and ``evolve``: pure, no I/O, no clock.

One stream holds one aggregate, kept small so that the hot paths never queue behind a hot stream:

    case:<case>                        CaseOpened, CaseTransferred, CaseReleased, CaseClosed
    checkin:<case>:<YYYY-MM-DD>        CheckinRecorded, SymptomsReported, CheckinMissed (one day)
    seal:<community>:<compound>        AreaSealed, SealLifted, SealExtended
    screening:<screening>              ScreeningScheduled, SampleCodesIssued
    sample:<screening>:<resident>      SampleTaken, ResultRecorded

A case's life is a handful of events; its daily check-ins live in one stream per day, so a
check-in loads two tiny streams, and "at most one CheckinMissed per case and day" is the unique
``(stream_id, version)`` of that day's stream. A screening round of a compound of 7,000 people
is one stream per sample, not one hot stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Iterable, Union, assert_never

from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    CheckinMissed,
    CheckinRecorded,
    CheckinRecordedV1,
    ResultRecorded,
    SampleCodesIssued,
    SampleTaken,
    SampleTakenV1,
    ScreeningScheduled,
    SealExtended,
    SealLifted,
    SymptomsReported,
    SymptomsReportedV1,
)

QuarantineEvent = Union[
    CaseOpened, CaseTransferred, CaseReleased, CaseClosed, CheckinRecorded, SymptomsReported,
    CheckinMissed, AreaSealed, SealLifted, ScreeningScheduled, SampleTaken, ResultRecorded,
    SealExtended, SampleCodesIssued,
]
#: Events of an earlier schema still in the streams: read as their current selves (``upcast``).
OldQuarantineEvent = Union[CheckinRecordedV1, SymptomsReportedV1, SampleTakenV1]


def case_stream(case: str) -> str:
    return f"case:{case}"


def day_stream(case: str, on: date) -> str:
    return f"checkin:{case}:{on.isoformat()}"


def seal_stream(community: str, compound: str) -> str:
    return f"seal:{community}:{compound}"


def screening_stream(screening: str) -> str:
    return f"screening:{screening}"


def sample_stream(screening: str, resident: str) -> str:
    return f"sample:{screening}:{resident}"


# -- states --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    case: str
    resident: str
    community: str
    household: str | None
    compound: str | None
    building: str | None
    kind: str
    reason: str
    #: Where the case is now: home, centralized, hospital, or monitoring (after release).
    stage: str
    starts_on: date
    #: The planned last day of the current stage (quarantine or monitoring).
    ends_on: date
    #: The first day a check-in is due; none are due while in hospital.
    due_from: date
    opened_at: datetime
    #: The day the case was taken to hospital, while it is there.
    admitted_on: date | None = None
    closed_on: date | None = None

    @property
    def closed(self) -> bool:
        return self.closed_on is not None

    @property
    def in_quarantine(self) -> bool:
        return self.stage in ("home", "centralized")


@dataclass(frozen=True, slots=True, kw_only=True)
class Day:
    """One case's check-in day."""

    checkins: int = 0
    missed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Seals:
    """The seals in force on one compound."""

    whole: bool = False
    buildings: frozenset[str] = frozenset()
    #: The planned last day of each seal in force that has one, by building (None: the compound's).
    until: dict[str | None, date] = field(default_factory=dict)

    def covers(self, building: str | None) -> bool:
        return self.whole if building is None else building in self.buildings

    def in_force(self) -> list[str | None]:
        """Every seal in force: None for the whole compound's, then the buildings in order."""
        return ([None] if self.whole else []) + sorted(self.buildings)


@dataclass(frozen=True, slots=True, kw_only=True)
class Screening:
    screening: str
    community: str
    compound: str
    on: date
    slots: tuple[str, ...]
    stay_in_until_result: bool = False
    #: Codes were printed ahead of this round: a code given at sampling must be one of them.
    codes_issued: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    screening: str
    resident: str
    result: str | None = None
    stay_in_until_result: bool = False


State = Union[Case, Day, Seals, Screening, Sample]


# -- evolve --------------------------------------------------------------------------------


def evolve(state: State | None, event: QuarantineEvent | OldQuarantineEvent) -> State:
    """Apply one event of a stream to its aggregate (None before the first event)."""
    match event:
        case CaseOpened():
            return Case(
                case=event.case, resident=event.resident, community=event.community,
                household=event.household, compound=event.compound, building=event.building,
                kind=event.kind, reason=event.reason, stage=event.kind, starts_on=event.starts_on,
                ends_on=event.ends_on, due_from=event.checkins_due_from or event.starts_on,
                opened_at=event.opened_at,
            )
        case CaseTransferred():
            return _transferred(_expect(state, Case, event), event)
        case CaseReleased():
            case = _expect(state, Case, event)
            # Out of hospital, check-ins are due again from the next day.
            due = max(case.due_from, event.on + timedelta(days=1)) if case.stage == "hospital" else case.due_from
            return replace(case, stage="monitoring", ends_on=event.monitoring_until, due_from=due,
                           admitted_on=None)
        case CaseClosed():
            return replace(_expect(state, Case, event), closed_on=event.on)
        case CheckinRecorded():
            day = state if isinstance(state, Day) else Day()
            return replace(day, checkins=day.checkins + 1)
        case SymptomsReported():
            return _expect(state, Day, event)
        case CheckinMissed():
            return replace(state if isinstance(state, Day) else Day(), missed=True)
        case AreaSealed():
            seals = state if isinstance(state, Seals) else Seals()
            until = _until(seals, event.building, event.until)
            if event.building is None:
                return replace(seals, whole=True, until=until)
            return replace(seals, buildings=seals.buildings | {event.building}, until=until)
        case SealLifted():
            seals = _expect(state, Seals, event)
            until = _until(seals, event.building, None)
            if event.building is None:
                return replace(seals, whole=False, until=until)
            return replace(seals, buildings=seals.buildings - {event.building}, until=until)
        case SealExtended():
            seals = _expect(state, Seals, event)
            return replace(seals, until=_until(seals, event.building, event.until))
        case ScreeningScheduled():
            return Screening(screening=event.screening, community=event.community, compound=event.compound,
                             on=event.on, slots=tuple(s.label for s in event.slots),
                             stay_in_until_result=event.stay_in_until_result)
        case SampleCodesIssued():
            return replace(_expect(state, Screening, event), codes_issued=True)
        case SampleTaken():
            return Sample(screening=event.screening, resident=event.resident,
                          stay_in_until_result=event.stay_in_until_result)
        case ResultRecorded():
            return replace(_expect(state, Sample, event), result=event.result)
        case CheckinRecordedV1() | SymptomsReportedV1() | SampleTakenV1():
            return evolve(state, event.upcast())
        case _:
            assert_never(event)


def _transferred(case: Case, event: CaseTransferred) -> Case:
    if event.to == "hospital":
        return replace(case, stage="hospital", admitted_on=event.on)
    # To centralized quarantine: a new period when it starts one, else the same days elsewhere.
    changes: dict = {"stage": "centralized", "admitted_on": None}
    if event.ends_on is not None:
        changes["ends_on"] = event.ends_on
    if case.stage == "hospital" and event.on is not None:
        changes["due_from"] = max(case.due_from, event.on + timedelta(days=1))
    return replace(case, **changes)


def _until(seals: Seals, building: str | None, until: date | None) -> dict[str | None, date]:
    """The seals' planned last days with ``building``'s set to ``until`` (None: it has none)."""
    out = {k: v for k, v in seals.until.items() if k != building}
    return out if until is None else out | {building: until}


def replay(events: Iterable[QuarantineEvent | OldQuarantineEvent], state: State | None = None) -> State | None:
    """Fold a stream's events into its aggregate."""
    for event in events:
        state = evolve(state, event)
    return state


def _expect(state: State | None, cls: type, event: QuarantineEvent):
    if not isinstance(state, cls):
        raise TypeError(f"{type(event).__name__} applied to {type(state).__name__}, expected {cls.__name__}")
    return state
