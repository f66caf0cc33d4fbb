"""The quarantine service's commands as they arrive on ``cordon.cmd.quarantine.<command>``: wire
types, strict parsing and the checks a decoder cannot make.

Rules that need a day ("not in the future", "not before the start") are the domain's: they need
the city's calendar (``config.Config.zone``). Every failure here is :class:`~shared.errors.Invalid`
naming the field.
"""
from __future__ import annotations

import re
from datetime import date, time
from typing import Union, assert_never, get_args

import msgspec

from shared import wire
from shared.contracts.quarantine import CaseKind, CaseReason, TestResult, TransferTo
from shared.errors import Invalid
from shared.subjects import check_community, check_slug

MAX_SYMPTOMS = 20
MAX_SYMPTOM = 100
MAX_SLOTS = 24
#: The scheduler's bulk command handles at most this many cases at once.
MAX_MISSED_CASES = 1000
#: Codes printed per ``issue_sample_codes`` (as passes per ``issue_passes``): the reply lists them.
MAX_CODES = 6000


class SlotIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             rename={"from_": "from"}):
    """A screening slot as sent: times as ``HH:MM`` (or ``HH:MM:SS``)."""

    label: str
    from_: str
    to: str


class OpenCase(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    resident: str
    kind: CaseKind
    reason: CaseReason
    starts_on: date
    case: str | None = None
    #: Where the resident lives. Taken from the local directory of registry facts; given here
    #: (e.g. by a reaction, from the registry's own event) it lets a case open before the directory
    #: has caught up with a resident registered a moment ago.
    household: str | None = None
    compound: str | None = None
    building: str | None = None


class RecordCheckin(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    case: str
    on: date
    temperature_c: float
    symptoms: list[str] = []


class TransferCase(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    case: str
    to: TransferTo


class ReleaseCase(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    case: str
    on: date


class RecordMissedCheckins(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The scheduler's: CheckinMissed for each of ``cases`` still without a check-in on ``on``."""

    on: date
    cases: list[str]


class Seal(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    building: str | None = None
    #: The planned last day of the seal; it is not lifted before (a new round moves it later).
    until: date | None = None


class LiftSeal(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    building: str | None = None


class ExtendSeal(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Move a seal's planned last day later (the seal of ``building``, or of the whole compound)."""

    community: str
    compound: str
    building: str | None = None
    until: date


class ScheduleScreening(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    on: date
    slots: list[SlotIn]
    screening: str | None = None
    #: The sampled stay in until their result is back: the gate denies them going out.
    stay_in_until_result: bool = False


class IssueSampleCodes(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Registration codes printed ahead of a round for ``residents``, or for every resident of the
    round's compound (``all_residents``, of ``building`` only when given) who has none yet."""

    screening: str
    residents: list[str] = []
    all_residents: bool = False
    building: str | None = None


class RecordSample(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    screening: str
    #: Who was sampled; may be left out when ``code`` is one issued ahead (it names the resident).
    resident: str | None = None
    #: The registration code printed for the resident (the elderly without a phone).
    code: str | None = None
    slot: str | None = None
    #: This resident stays in until the result is back, whatever the round's rule.
    stay_in_until_result: bool = False


class RecordResult(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    screening: str
    resident: str
    result: TestResult
    #: The id of the case a positive result opens; generated when absent.
    case: str | None = None


Command = Union[OpenCase, RecordCheckin, TransferCase, ReleaseCase, RecordMissedCheckins, Seal, LiftSeal,
                ScheduleScreening, RecordSample, RecordResult, ExtendSeal, IssueSampleCodes]

COMMANDS: dict[str, type] = {
    "open_case": OpenCase,
    "record_checkin": RecordCheckin,
    "transfer_case": TransferCase,
    "release_case": ReleaseCase,
    "record_missed_checkins": RecordMissedCheckins,
    "seal": Seal,
    "lift_seal": LiftSeal,
    "schedule_screening": ScheduleScreening,
    "record_sample": RecordSample,
    "record_result": RecordResult,
    "extend_seal": ExtendSeal,
    "issue_sample_codes": IssueSampleCodes,
}

#: The id each creating command makes when the caller leaves it out; the runtime fills it in
#: before ``validate``. A result's case id is used only when the result is positive.
CREATES: dict[type, str] = {OpenCase: "case", ScheduleScreening: "screening", RecordResult: "case"}

CHOICES = {
    "kind": get_args(CaseKind),
    "reason": get_args(CaseReason),
    "to": get_args(TransferTo),
    "result": get_args(TestResult),
}


def decode(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` (no rule checks: :func:`validate`)."""
    return wire.decode("quarantine", COMMANDS, name, payload, CHOICES)


def parse(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` and validate it."""
    return validate(decode(name, payload))


def validate(cmd: Command) -> Command:
    """Check what a decoder cannot; return ``cmd`` or raise :class:`Invalid`."""
    wire.check_common(cmd)
    match cmd:
        case OpenCase():
            check_community(cmd.community)
            check_slug(cmd.resident, "resident")
            for field in ("case", "household", "compound", "building"):
                wire.optional_slug(getattr(cmd, field), field)
            if cmd.household is not None and cmd.compound is None:
                raise Invalid("a household given with open_case needs its compound too", field="compound")
            if cmd.household is None and (cmd.compound is not None or cmd.building is not None):
                raise Invalid("compound and building are where the household is: give the household too",
                              field="household")
        case RecordCheckin():
            check_slug(cmd.case, "case")
            wire.temperature(cmd.temperature_c)
            symptoms(cmd.symptoms)
        case TransferCase() | ReleaseCase():
            check_slug(cmd.case, "case")
        case RecordMissedCheckins():
            wire.ids(cmd.cases, "cases", MAX_MISSED_CASES)
        case Seal() | LiftSeal() | ExtendSeal():
            check_community(cmd.community)
            check_slug(cmd.compound, "compound")
            wire.optional_slug(cmd.building, "building")
        case ScheduleScreening():
            check_community(cmd.community)
            check_slug(cmd.compound, "compound")
            wire.optional_slug(cmd.screening, "screening")
            slots(cmd.slots)
        case IssueSampleCodes():
            check_slug(cmd.screening, "screening")
            wire.optional_slug(cmd.building, "building")
            code_holders(cmd)
        case RecordSample():
            check_slug(cmd.screening, "screening")
            if cmd.resident is None and cmd.code is None:
                raise Invalid("give the resident sampled, or the code issued to them ahead of the round",
                              field="resident")
            wire.optional_slug(cmd.resident, "resident")
            if cmd.code is not None:
                wire.text(cmd.code, "code", 32)
            if cmd.slot is not None:
                wire.text(cmd.slot, "slot", 50)
        case RecordResult():
            check_slug(cmd.screening, "screening")
            check_slug(cmd.resident, "resident")
            wire.optional_slug(cmd.case, "case")
        case _:
            assert_never(cmd)
    return cmd


def code_holders(cmd: IssueSampleCodes) -> None:
    """Residents listed, or all of the compound: one of the two."""
    if cmd.all_residents:
        if cmd.residents:
            raise Invalid("give residents, or all_residents, not both", field="residents")
        return
    if cmd.building is not None:
        raise Invalid("building narrows all_residents; with a residents list leave it out", field="building")
    if not cmd.residents:
        raise Invalid("residents must list at least one id, or set all_residents", field="residents")
    wire.ids(cmd.residents, "residents", MAX_CODES)


def symptoms(values: list[str]) -> None:
    if len(values) > MAX_SYMPTOMS:
        raise Invalid(f"symptoms lists {len(values)} entries; at most {MAX_SYMPTOMS}", field="symptoms")
    for i, value in enumerate(values):
        wire.text(value, f"symptoms[{i}]", MAX_SYMPTOM)
    wire.no_duplicates([v.strip().lower() for v in values], "symptoms")


_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")


def slot_time(value: str, field: str) -> time:
    if not _TIME.match(value):
        raise Invalid(f"{field} {value!r} is not a time of day; use HH:MM, e.g. 07:30", field=field)
    return time.fromisoformat(value)


def slots(values: list[SlotIn]) -> None:
    if not values:
        raise Invalid("slots must list at least one time slot, e.g. "
                      '{"label": "students", "from": "07:00", "to": "08:00"}', field="slots")
    if len(values) > MAX_SLOTS:
        raise Invalid(f"slots lists {len(values)} slots; at most {MAX_SLOTS}", field="slots")
    for i, slot in enumerate(values):
        wire.text(slot.label, f"slots[{i}].label", 50)
        start, end = slot_time(slot.from_, f"slots[{i}].from"), slot_time(slot.to, f"slots[{i}].to")
        if start >= end:
            raise Invalid(f"slots[{i}]: from {slot.from_} must be before to {slot.to}", field=f"slots[{i}].from")
    wire.no_duplicates([s.label.strip() for s in values], "slots")
