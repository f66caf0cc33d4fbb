"""The drop point at a gate: parcels, takeaway and groceries left for a household, then collected.
Pure: no I/O, no clock.

Rules:
- drop_parcel: the gate is one of the compound's and the household lives in that compound (else
  ``not_found``: nothing recorded). Anything may be left, for anyone: whether the household can
  come for it is asked when it is collected.
- collect_parcel: once (``already_collected``). A volunteer may always take it to the door. A
  resident must be of the parcel's household (``not_of_household``) and able to walk to the gate:
  their passage out on foot there would be allowed, gate and fever aside (:func:`can_come`); a
  resident under quarantine, of a sealed building or a sealed compound is refused
  ``must_be_delivered``, naming why: a volunteer carries it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from services.checkpoint import passage
from services.checkpoint.commands import CheckPassage, CollectParcel, DropParcel
from services.checkpoint.domain import Compound, Parcel, known_compound, known_gate, opened
from shared.contracts.checkpoint import ParcelCollected, ParcelDropped
from shared.errors import NotFound, Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class DropFacts:
    compound: Compound | None
    #: The household the parcel is for (None: not registered).
    home: passage.Home | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectFacts:
    parcel: Parcel | None
    #: The collecting resident at the parcel's gate, on foot, on the way out (None for a volunteer).
    person: passage.Facts | None = None


def drop(facts: DropFacts, cmd: DropParcel) -> list[ParcelDropped]:
    compound = known_compound(facts.compound, cmd.community, cmd.compound)
    known_gate(compound, cmd.gate)
    home = facts.home
    if home is None:
        raise NotFound(f"household {cmd.household} is not registered", field="household")
    if (home.community, home.compound) != (cmd.community, cmd.compound):
        raise NotFound(f"household {cmd.household} does not live in compound {cmd.compound}", field="household")
    return [ParcelDropped(community=cmd.community, parcel=_id(cmd.parcel), compound=cmd.compound, gate=cmd.gate,
                          household=home.household, building=home.building, kind=cmd.kind,
                          dropped_at=passage.at(cmd), dropped_by=cmd.actor)]


def collect(facts: CollectFacts, cmd: CollectParcel) -> list[ParcelCollected]:
    parcel = facts.parcel
    if parcel is None:
        raise NotFound(f"parcel {cmd.parcel} was never dropped", field="parcel")
    if parcel.collected:
        raise Rejected(f"parcel {cmd.parcel} was already collected", reason="already_collected")
    if cmd.resident is not None:
        _resident_may_collect(facts.person, parcel, cmd)
    return [ParcelCollected(community=parcel.community, parcel=parcel.parcel, compound=parcel.compound,
                            gate=parcel.gate, household=parcel.household, kind=parcel.kind, resident=cmd.resident,
                            volunteer=cmd.volunteer, collected_at=passage.at(cmd), collected_by=cmd.actor)]


def on_foot(parcel: Parcel, cmd: CollectParcel) -> CheckPassage:
    """The collecting resident as a passage out at the parcel's gate (no pass, no reading)."""
    return CheckPassage(command_id=cmd.command_id, actor=cmd.actor, occurred_at=cmd.occurred_at,
                        community=parcel.community, compound=parcel.compound, gate=parcel.gate, direction="out",
                        temperature_c=0.0, resident=cmd.resident, passage=parcel.parcel)


def can_come(person: passage.Facts, parcel: Parcel, cmd: CollectParcel) -> str | None:
    """Why the resident cannot walk to the drop point now (a passage rule's reason), or None. The
    drop point is on this side of the gate: whether the gate is closed does not matter, and no
    pass is asked (the pass rule is judged at level ``open``; a sealed compound still counts)."""
    control = person.control or opened(parcel.community, parcel.compound)
    free = replace(person, control=replace(control, closed_gates=frozenset(), level="open"),
                   compound_sealed=person.compound_sealed or control.level == "sealed")
    return passage.reason(free, on_foot(parcel, cmd))


def _resident_may_collect(person: passage.Facts | None, parcel: Parcel, cmd: CollectParcel) -> None:
    resident = cmd.resident
    lives = person.resident if person is not None else None
    if lives is None or lives.moved_out or lives.household != parcel.household:
        raise Rejected(f"resident {resident} is not of household {parcel.household}: a resident of the household "
                       "collects it, or a volunteer takes it to the door", reason="not_of_household")
    why = can_come(person, parcel, cmd)
    if why is not None:
        raise Rejected(f"resident {resident} cannot come to the gate ({why}): a volunteer takes parcel "
                       f"{parcel.parcel} to the door (collect_parcel with volunteer)", reason="must_be_delivered")


def _id(value: str | None) -> str:
    if value is None:
        raise ValueError("the parcel id must be filled (the runtime does: commands.CREATES) before decide")
    return value

