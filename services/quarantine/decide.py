"""The quarantine service's rules: ``decide(facts, command) -> events``. Pure.

Time, ids and the actor arrive on the command (the runtime fills ``occurred_at`` and created ids
before the handler runs); the city's policy arrives as ``facts.config``; "today" is the command's
``occurred_at`` on the city's calendar (``Config.day``). Every refusal is a NotFound, Conflict or
Rejected whose ``reason`` is documented in README.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import assert_never

from services.quarantine.commands import (
    MAX_CODES,
    Command,
    ExtendSeal,
    IssueSampleCodes,
    LiftSeal,
    OpenCase,
    RecordCheckin,
    RecordMissedCheckins,
    RecordResult,
    RecordSample,
    ReleaseCase,
    ScheduleScreening,
    Seal,
    TransferCase,
    slot_time,
)
from services.quarantine.config import Config
from services.quarantine.domain import Case, Day, QuarantineEvent, Sample, Screening, Seals
from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    CheckinMissed,
    CheckinRecorded,
    ResultRecorded,
    SampleCodesIssued,
    SampleTaken,
    ScreeningScheduled,
    SealExtended,
    SealLifted,
    Slot,
    SymptomsReported,
)
from shared.errors import Conflict, NotFound, Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class Resident:
    """Where a resident lives, from the local directory of registry facts (or the command)."""

    resident: str
    community: str
    household: str | None
    compound: str | None
    building: str | None
    moved_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Compound:
    community: str
    compound: str
    buildings: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the handler loaded, and the city's settings; None where the stream is empty, the row
    absent, or not needed.

    open_case: case (at the id), open_case, resident · record_checkin: case, day ·
    transfer/release: case · seal/lift_seal/extend_seal: compound, seals · schedule_screening:
    compound, screening, seals · record_sample: screening, sample, resident, code_holder ·
    record_result: screening, sample, resident, open_case, case (at the id for a positive) ·
    issue_sample_codes: screening, compound, residents, coded.
    """

    config: Config
    case: Case | None = None
    open_case: Case | None = None
    resident: Resident | None = None
    day: Day | None = None
    compound: Compound | None = None
    seals: Seals | None = None
    screening: Screening | None = None
    sample: Sample | None = None
    #: record_sample with a code: the resident that code was issued to in the round (None: no such code).
    code_holder: str | None = None
    #: issue_sample_codes: the residents to print codes for, as the directory knows them (listed
    #: ones it does not know are absent), and those already holding a code of the round.
    residents: tuple[Resident, ...] = ()
    coded: frozenset[str] = frozenset()


def decide(facts: Facts, cmd: Command) -> list[QuarantineEvent]:
    """The events a command produces, or a NotFound / Conflict / Rejected error."""
    match cmd:
        case OpenCase():
            return [open_case(facts, cmd)]
        case RecordCheckin():
            return record_checkin(facts, cmd)
        case TransferCase():
            return [transfer_case(facts, cmd)]
        case ReleaseCase():
            return [release_case(facts, cmd)]
        case RecordMissedCheckins():
            raise TypeError("record_missed_checkins decides per case: use missed_checkin")
        case Seal():
            return [seal(facts, cmd)]
        case LiftSeal():
            return [lift_seal(facts, cmd)]
        case ScheduleScreening():
            return schedule_screening(facts, cmd)
        case RecordSample():
            return [record_sample(facts, cmd)]
        case RecordResult():
            return record_result(facts, cmd)
        case ExtendSeal():
            return [extend_seal(facts, cmd)]
        case IssueSampleCodes():
            return [issue_sample_codes(facts, cmd)[0]]
        case _:
            assert_never(cmd)


# -- cases ---------------------------------------------------------------------------------


def open_case(facts: Facts, cmd: OpenCase, reason: str | None = None) -> CaseOpened:
    case_id = _filled(cmd.case, "case")
    if facts.case is not None:
        raise Conflict(f"case id {case_id} is taken (resident {facts.case.resident})", field="case")
    where = facts.resident
    if where is None:
        raise NotFound(f"resident {cmd.resident} is not registered (the registry is the source of "
                       "residents; one registered a moment ago is known within seconds)", field="resident")
    if where.community != cmd.community:
        raise NotFound(f"resident {cmd.resident} is not registered in {cmd.community}", field="resident")
    if where.moved_out and cmd.kind == "home":
        raise Rejected(f"resident {cmd.resident} has moved out and has no household here for home "
                       "quarantine; choose centralized", reason="no_household_here")
    _no_open_case(facts.open_case, cmd.resident)
    today = facts.config.day(_at(cmd))
    if cmd.starts_on > today:
        raise Rejected(f"starts_on {cmd.starts_on} is after today ({today})", reason="future_day")
    ends_on = facts.config.end_for(cmd.kind, cmd.starts_on)
    if ends_on < today:
        raise Rejected(f"a {cmd.kind} case starting on {cmd.starts_on} would have ended on {ends_on}, "
                       f"before today ({today})", reason="already_over")
    return CaseOpened(
        community=cmd.community, case=case_id, resident=cmd.resident, household=where.household,
        compound=where.compound, building=where.building, kind=cmd.kind, reason=reason or cmd.reason,
        starts_on=cmd.starts_on, ends_on=ends_on, opened_at=_at(cmd), opened_by=cmd.actor,
        checkins_due_from=facts.config.first_due_day(cmd.starts_on, _at(cmd)),
    )


def _no_open_case(case: Case | None, resident: str) -> None:
    if case is not None and not case.closed:
        raise Rejected(f"resident {resident} already has an open case, {case.case} ({case.stage} since "
                       f"{case.starts_on}); transfer or release it instead", reason="case_open")


def record_checkin(facts: Facts, cmd: RecordCheckin) -> list[QuarantineEvent]:
    case = _open(facts.case, cmd.case)
    if case.stage == "hospital":
        raise Rejected(f"case {case.case} is in hospital; the hospital follows the patient",
                       reason="in_hospital")
    _a_day_of_the_case(case, cmd.on, facts.config.day(_at(cmd)))
    # The temperature and the symptoms stay with the quarantine (handlers write them): on the bus,
    # that the resident checked in and, when abnormal, why.
    events: list[QuarantineEvent] = [CheckinRecorded(
        community=case.community, case=case.case, resident=case.resident, on=cmd.on,
        recorded_at=_at(cmd), recorded_by=cmd.actor,
    )]
    fever = cmd.temperature_c >= facts.config.fever_c
    if fever or cmd.symptoms:
        events.append(SymptomsReported(
            community=case.community, case=case.case, resident=case.resident, on=cmd.on,
            fever=fever, symptomatic=bool(cmd.symptoms), reported_at=_at(cmd), reported_by=cmd.actor,
        ))
    return events


def missed_checkin(case: Case | None, day: Day | None, case_id: str, cmd: RecordMissedCheckins,
                   config: Config) -> CheckinMissed:
    """CheckinMissed for one case on ``cmd.on``, or the refusal saying why not."""
    check_deadline_passed(cmd, config)
    case = _open(case, case_id)
    if case.stage == "hospital":
        raise Rejected(f"case {case_id} is in hospital", reason="in_hospital")
    if cmd.on < case.due_from or (case.stage == "monitoring" and cmd.on > case.ends_on):
        raise Rejected(f"no check-in of case {case_id} is due on {cmd.on}", reason="not_due")
    if day is not None and day.checkins:
        raise Rejected(f"case {case_id} checked in on {cmd.on}", reason="checked_in")
    if day is not None and day.missed:
        raise Rejected(f"the check-in of case {case_id} on {cmd.on} is already recorded as missed",
                       reason="already_missed")
    return CheckinMissed(community=case.community, case=case.case, resident=case.resident,
                         household=case.household, on=cmd.on, missed_at=_at(cmd), missed_by=cmd.actor)


def check_deadline_passed(cmd: RecordMissedCheckins, config: Config) -> None:
    if _at(cmd) < config.deadline(cmd.on):
        raise Rejected(f"the check-ins of {cmd.on} are due by {config.deadline(cmd.on).isoformat()}; "
                       "none is missed before then", reason="too_early")


def transfer_case(facts: Facts, cmd: TransferCase) -> CaseTransferred:
    case = _open(facts.case, cmd.case)
    if case.stage == cmd.to:
        raise Rejected(f"case {case.case} is already in {cmd.to}", reason="already_there")
    today = facts.config.day(_at(cmd))
    # From home quarantine the same days go on elsewhere; from monitoring or hospital to
    # centralized quarantine a new quarantine period starts today.
    new_period = cmd.to == "centralized" and not case.in_quarantine
    return CaseTransferred(
        community=case.community, case=case.case, resident=case.resident, household=case.household,
        to=cmd.to, on=today, ends_on=facts.config.quarantine_end(today) if new_period else None,
        transferred_at=_at(cmd), transferred_by=cmd.actor,
    )


def release_case(facts: Facts, cmd: ReleaseCase) -> CaseReleased | CaseClosed:
    case = _open(facts.case, cmd.case)
    _a_day_of_the_case(case, cmd.on, facts.config.day(_at(cmd)))
    if case.stage == "monitoring":
        if cmd.on < case.ends_on:
            raise Rejected(f"the monitoring of case {case.case} runs until {case.ends_on}",
                           reason="monitoring_not_over")
        return CaseClosed(community=case.community, case=case.case, resident=case.resident,
                          household=case.household, compound=case.compound, building=case.building,
                          on=cmd.on, closed_at=_at(cmd), closed_by=cmd.actor)
    if case.admitted_on is not None and cmd.on < case.admitted_on:
        raise Rejected(f"case {case.case} was taken to hospital on {case.admitted_on}; a release from "
                       "hospital is dated on or after that day", reason="before_admission")
    if case.in_quarantine and cmd.on < case.ends_on:
        raise Rejected(f"the quarantine of case {case.case} runs until {case.ends_on} "
                       f"({case.stage}); the policy's duration cannot be shortened here",
                       reason="quarantine_not_over")
    return CaseReleased(community=case.community, case=case.case, resident=case.resident,
                        household=case.household, compound=case.compound, building=case.building,
                        on=cmd.on, monitoring_until=facts.config.monitoring_end(cmd.on + timedelta(days=1)),
                        released_at=_at(cmd), released_by=cmd.actor)


def _open(case: Case | None, case_id: str) -> Case:
    if case is None:
        raise NotFound(f"case {case_id} does not exist", field="case")
    if case.closed:
        raise Rejected(f"case {case_id} was closed on {case.closed_on}", reason="case_closed")
    return case


def _a_day_of_the_case(case: Case, on: date, today: date) -> None:
    if on < case.starts_on:
        raise Rejected(f"{on} is before case {case.case} started ({case.starts_on})", reason="before_start")
    if on > today:
        raise Rejected(f"{on} is after today ({today})", reason="future_day")


# -- seals ---------------------------------------------------------------------------------


def seal(facts: Facts, cmd: Seal) -> AreaSealed:
    seals = facts.seals or Seals()
    _area(facts.compound, cmd)
    if seals.covers(cmd.building) or (cmd.building is not None and seals.whole):
        raise Rejected(f"{_name(cmd)} is already sealed", reason="already_sealed")
    _not_past(cmd.until, facts.config.day(_at(cmd)))
    return AreaSealed(community=cmd.community, compound=cmd.compound, building=cmd.building,
                      sealed_at=_at(cmd), sealed_by=cmd.actor, until=cmd.until)


def lift_seal(facts: Facts, cmd: LiftSeal) -> SealLifted:
    _area(facts.compound, cmd)
    seals = facts.seals or Seals()
    if not seals.covers(cmd.building):
        raise Rejected(f"{_name(cmd)} is not sealed", reason="not_sealed")
    until, today = seals.until.get(cmd.building), facts.config.day(_at(cmd))
    if until is not None and today < until:
        raise Rejected(f"the seal of {_name(cmd)} runs until {until} (a screening round's results are "
                       "awaited, or staff set it); lift it from that day on", reason="seal_not_over")
    return SealLifted(community=cmd.community, compound=cmd.compound, building=cmd.building,
                      lifted_at=_at(cmd), lifted_by=cmd.actor)


def extend_seal(facts: Facts, cmd: ExtendSeal) -> SealExtended:
    _area(facts.compound, cmd)
    seals = facts.seals or Seals()
    if not seals.covers(cmd.building):
        raise Rejected(f"{_name(cmd)} is not sealed: seal it (with until) instead", reason="not_sealed")
    _not_past(cmd.until, facts.config.day(_at(cmd)))
    before = seals.until.get(cmd.building)
    if before is not None and cmd.until <= before:
        raise Rejected(f"the seal of {_name(cmd)} already runs until {before}; an extension moves it later",
                       reason="not_later")
    return SealExtended(community=cmd.community, compound=cmd.compound, building=cmd.building, until=cmd.until,
                        previous_until=before, extended_at=_at(cmd), extended_by=cmd.actor)


def _not_past(until: date | None, today: date) -> None:
    if until is not None and until < today:
        raise Rejected(f"until {until} is before today ({today})", reason="past_day")


def _area(compound: Compound | None, cmd: Seal | LiftSeal | ExtendSeal) -> None:
    if compound is None:
        raise NotFound(f"compound {cmd.compound} is not registered in {cmd.community}", field="compound")
    if cmd.building is not None and cmd.building not in compound.buildings:
        raise NotFound(f"building {cmd.building} is not in compound {cmd.compound} "
                       f"(its buildings: {', '.join(compound.buildings)})", field="building")


def _name(cmd: Seal | LiftSeal | ExtendSeal) -> str:
    whole = f"compound {cmd.compound}"
    return whole if cmd.building is None else f"building {cmd.building} of {whole}"


# -- screening -----------------------------------------------------------------------------


def schedule_screening(facts: Facts, cmd: ScheduleScreening) -> list[QuarantineEvent]:
    """ScreeningScheduled; on a sealed compound, each seal in force extended to the round's
    results (SealExtended), so none is lifted before they are back."""
    round_ = _screening_scheduled(facts, cmd)
    return [round_, *extended_by_round(facts.seals or Seals(), round_, facts.config.seal_days_after_screening)]


def extended_by_round(seals: Seals, round_: ScreeningScheduled, days: int) -> list[SealExtended]:
    """A SealExtended for each seal in force on the round's compound planned to end before the
    round's results are due (``days`` after the round's day)."""
    until = round_.on + timedelta(days=days)
    return [SealExtended(community=round_.community, compound=round_.compound, building=building, until=until,
                         previous_until=seals.until.get(building), screening=round_.screening,
                         extended_at=round_.scheduled_at, extended_by=round_.scheduled_by)
            for building in seals.in_force()
            if seals.until.get(building) is None or seals.until[building] < until]


def _screening_scheduled(facts: Facts, cmd: ScheduleScreening) -> ScreeningScheduled:
    screening = _filled(cmd.screening, "screening")
    if facts.compound is None:
        raise NotFound(f"compound {cmd.compound} is not registered in {cmd.community}", field="compound")
    if facts.screening is not None:
        raise Conflict(f"screening id {screening} is taken", field="screening")
    today = facts.config.day(_at(cmd))
    if cmd.on < today:
        raise Rejected(f"{cmd.on} is before today ({today})", reason="past_day")
    slots = [Slot(label=s.label.strip(), from_=slot_time(s.from_, "from"), to=slot_time(s.to, "to"))
             for s in cmd.slots]
    return ScreeningScheduled(community=cmd.community, screening=screening, compound=cmd.compound,
                              on=cmd.on, slots=slots, scheduled_at=_at(cmd), scheduled_by=cmd.actor,
                              stay_in_until_result=cmd.stay_in_until_result)


def issue_sample_codes(facts: Facts, cmd: IssueSampleCodes) -> tuple[SampleCodesIssued, list[Resident]]:
    """SampleCodesIssued and the residents who get a new code: those asked for (listed, or every
    resident of the compound [building] living there) who hold none for the round yet."""
    screening = _screening(facts.screening, cmd.screening)
    today = facts.config.day(_at(cmd))
    if today > screening.on:
        raise Rejected(f"screening {screening.screening} took place on {screening.on}; codes are printed "
                       "ahead of a round", reason="past_day")
    if cmd.building is not None and (facts.compound is None or cmd.building not in facts.compound.buildings):
        raise NotFound(f"building {cmd.building} is not in compound {screening.compound}", field="building")
    found = {r.resident: r for r in facts.residents}
    for i, resident in enumerate(cmd.residents):
        _lives_in_round(found.get(resident), resident, screening, f"residents[{i}]")
    wanted = facts.residents if cmd.all_residents else tuple(found[r] for r in cmd.residents)
    new = [r for r in wanted if r.resident not in facts.coded]
    if not new:
        raise Rejected(f"every resident asked for already holds a code of screening {screening.screening}",
                       reason="already_issued")
    if len(new) > MAX_CODES:
        raise Rejected(f"{len(new)} residents; at most {MAX_CODES} codes a call: issue them per building",
                       reason="too_many_codes")
    return SampleCodesIssued(community=screening.community, screening=screening.screening,
                             compound=screening.compound, building=cmd.building, count=len(new),
                             issued_at=_at(cmd), issued_by=cmd.actor), new


def sampled_resident(facts: Facts, cmd: RecordSample) -> str:
    """Who was sampled: the holder of the code issued ahead when one was given, else ``resident``.
    A round that printed codes takes only its own; a code of another resident is refused."""
    screening = _screening(facts.screening, cmd.screening)
    holder = facts.code_holder
    if cmd.code is not None and holder is None and (screening.codes_issued or cmd.resident is None):
        raise NotFound(f"code {cmd.code.strip()!r} was not issued for screening {screening.screening}; "
                       "check the slip, or record the sample by resident", field="code")
    if holder is not None and cmd.resident is not None and cmd.resident != holder:
        raise Rejected(f"code {cmd.code.strip()!r} was issued to another resident of this round, not to "
                       f"{cmd.resident}; check whose slip it is", reason="code_of_another_resident")
    return holder or _filled(cmd.resident, "resident")


def _lives_in_round(where: Resident | None, resident: str, screening: Screening, field: str) -> Resident:
    if where is None:
        raise NotFound(f"resident {resident} is not registered", field=field)
    if (where.community, where.compound) != (screening.community, screening.compound) or where.moved_out:
        raise Rejected(f"resident {resident} does not live in compound {screening.compound}, "
                       "the compound of this round", reason="other_compound")
    return where


def record_sample(facts: Facts, cmd: RecordSample) -> SampleTaken:
    screening = _screening(facts.screening, cmd.screening)
    resident = sampled_resident(facts, cmd)
    where = facts.resident
    if where is None:
        raise NotFound(f"resident {resident} is not registered", field="resident")
    if (where.community, where.compound) != (screening.community, screening.compound):
        raise Rejected(f"resident {resident} does not live in compound {screening.compound}, "
                       "the compound of this round", reason="other_compound")
    if cmd.slot is not None and cmd.slot.strip() not in screening.slots:
        raise NotFound(f"slot {cmd.slot!r} is not a slot of screening {screening.screening} "
                       f"(its slots: {', '.join(screening.slots)})", field="slot")
    if facts.sample is not None:
        raise Rejected(f"resident {resident} was already sampled in this round", reason="already_sampled")
    today = facts.config.day(_at(cmd))
    if today < screening.on:
        raise Rejected(f"screening {screening.screening} takes place on {screening.on}, not today ({today})",
                       reason="before_screening_day")
    return SampleTaken(community=screening.community, screening=screening.screening, resident=resident,
                       compound=screening.compound,
                       slot=cmd.slot.strip() if cmd.slot else None, taken_at=_at(cmd), taken_by=cmd.actor,
                       stay_in_until_result=screening.stay_in_until_result or cmd.stay_in_until_result)


def record_result(facts: Facts, cmd: RecordResult) -> list[QuarantineEvent]:
    """ResultRecorded; a positive result also opens a case unless the resident has one open."""
    screening = _screening(facts.screening, cmd.screening)
    if facts.sample is None:
        raise Rejected(f"resident {cmd.resident} has no sample in screening {cmd.screening}",
                       reason="not_sampled")
    if facts.sample.result is not None:
        raise Rejected(f"the result of resident {cmd.resident} is already recorded: {facts.sample.result}",
                       reason="result_already_recorded")
    opened: list[QuarantineEvent] = []
    if cmd.result == "positive" and (facts.open_case is None or facts.open_case.closed):
        # Someone who moved out has no home here: centralized, whatever the policy's usual kind.
        moved_out = facts.resident is not None and facts.resident.moved_out
        kind = "centralized" if moved_out else facts.config.positive_kind
        opened.append(open_case(facts, OpenCase(
            command_id=cmd.command_id, actor=cmd.actor, occurred_at=cmd.occurred_at,
            community=screening.community, resident=cmd.resident, kind=kind, reason="positive_test",
            starts_on=facts.config.day(_at(cmd)), case=cmd.case,
        )))
    result = ResultRecorded(
        community=screening.community, screening=screening.screening, resident=cmd.resident,
        result=cmd.result, recorded_at=_at(cmd), recorded_by=cmd.actor, compound=screening.compound,
        case=opened[0].case if opened else None,
    )
    return [result, *opened]


def _screening(screening: Screening | None, screening_id: str) -> Screening:
    if screening is None:
        raise NotFound(f"screening {screening_id} does not exist", field="screening")
    return screening


# -- helpers -------------------------------------------------------------------------------


def _at(cmd: Command) -> datetime:
    if cmd.occurred_at is None:
        raise ValueError("occurred_at must be filled before decide")
    return cmd.occurred_at


def _filled(value: str | None, field: str) -> str:
    if value is None:
        raise ValueError(f"{field} must be filled before decide")
    return value
