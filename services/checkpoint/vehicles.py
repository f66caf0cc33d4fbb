"""The vehicle decision: may this vehicle go through this gate, now? Pure: no I/O, no clock.

A vehicle carries people, and each resident aboard (the driver when a resident, then the
passengers in order) is judged by the passage rules, exactly as on foot (:func:`on_foot`,
:func:`services.checkpoint.passage.reason`): a rule added there applies here too. What the gate
judges of the vehicle as a whole comes first and last:

1. ``gate_closed``        the gate is closed: no vehicle passes it, either way.
2. ``compound_sealed``    out, and the compound is sealed: nothing leaves.
3. the first resident aboard whose passage on foot would be denied, with that reason
   (``building_sealed``, ``under_quarantine``, ``unknown_resident``, ...), naming them: a
   quarantined passenger keeps the whole vehicle in.
4. ``vehicles_not_admitted`` in, at a level that does not admit visitors (``config.visitors_admitted``),
   unless the vehicle brings residents home (purpose ``resident``) or is an ambulance or an
   official's (``emergency``, ``official``): a delivery van leaves its goods at the drop point.

On foot the papers are a pass; in a vehicle staff check the residents by id, so no pass is asked
(the pass rule is judged at level ``open``). No temperature is taken at a vehicle check here:
the fever rule never applies (a reading would be a passage of its own).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from services.checkpoint import passage
from services.checkpoint.commands import CheckPassage, CheckVehicle
from services.checkpoint.config import Config
from services.checkpoint.domain import known_compound, known_gate, opened
from shared.contracts.checkpoint import VehicleAllowed, VehicleDenied

#: Purposes admitted in whatever the level (short of a closed gate).
ALWAYS_ADMITTED = frozenset({"resident", "emergency", "official"})
#: No reading at a vehicle check: below any plausible threshold, so the fever rule never fires.
NO_READING = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """The gate (compound, control, seals: ``place``, whose person fields are empty) and, for each
    resident aboard (driver first), their facts as the gate sees them on foot."""

    place: passage.Facts
    aboard: tuple[tuple[str, passage.Facts], ...] = ()
    config: Config = Config()


def residents(cmd: CheckVehicle) -> list[str]:
    """The residents aboard, in the order they are judged: the driver, then the passengers."""
    driver = [cmd.driver.resident] if cmd.driver.resident is not None else []
    return driver + list(cmd.passengers)


def on_foot(cmd: CheckVehicle, resident: str | None) -> CheckPassage:
    """The resident aboard as a passage at the same gate, way and time (no pass, no reading);
    with ``resident`` None, nobody: the gate's own facts."""
    return CheckPassage(command_id=cmd.command_id, actor=cmd.actor, occurred_at=cmd.occurred_at,
                        community=cmd.community, compound=cmd.compound, gate=cmd.gate, direction=cmd.direction,
                        temperature_c=NO_READING, resident=resident, passage=cmd.vehicle)


def decide(facts: Facts, cmd: CheckVehicle) -> list[VehicleAllowed | VehicleDenied]:
    """VehicleAllowed or VehicleDenied (with the reason and the resident it is about). NotFound
    for an unknown compound or gate: bad input, nothing recorded."""
    compound = known_compound(facts.place.compound, cmd.community, cmd.compound)
    known_gate(compound, cmd.gate)
    why, who = reason(facts, cmd)
    common = dict(community=cmd.community, vehicle=_vehicle(cmd), compound=cmd.compound, gate=cmd.gate,
                  direction=cmd.direction, purpose=cmd.purpose, driver=cmd.driver.resident,
                  passengers=list(cmd.passengers), checked_at=passage.at(cmd), checked_by=cmd.actor)
    if why is None:
        return [VehicleAllowed(**common)]
    return [VehicleDenied(reason=why, resident=who, **common)]


def reason(facts: Facts, cmd: CheckVehicle) -> tuple[str | None, str | None]:
    """(the reason the vehicle is denied, the resident aboard it is about), (None, None) if allowed."""
    place = facts.place
    control = place.control or opened(cmd.community, cmd.compound)
    level = "sealed" if place.compound_sealed else control.level
    if cmd.gate in control.closed_gates:
        return "gate_closed", None
    if cmd.direction == "out" and level == "sealed":
        return "compound_sealed", None
    # the gate and the compound are judged above: each person only for what is theirs
    gate_open = opened(cmd.community, cmd.compound)
    for resident, person in facts.aboard:
        why = passage.reason(replace(person, control=gate_open, compound_sealed=False, config=facts.config),
                             on_foot(cmd, resident))
        if why is not None:
            return why, resident
    if cmd.direction == "in" and level not in facts.config.visitors_admitted and cmd.purpose not in ALWAYS_ADMITTED:
        return "vehicles_not_admitted", None
    return None, None


def _vehicle(cmd: CheckVehicle) -> str:
    if cmd.vehicle is None:
        raise ValueError("the vehicle id must be filled (the runtime does: commands.CREATES) before decide")
    return cmd.vehicle

