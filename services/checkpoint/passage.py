"""The passage decision: may this person go through this gate, now? Pure: no I/O, no clock.

Who is at the gate:
- a resident, named by a pass (its id or printed number) and/or a resident id. The events name the
  pass by its id and say a pass was shown; a number never goes into them (it is a credential), nor
  does one that matched no pass;
- a visitor: masked name, host household (must live in this compound; else ``not_found``).

The reasons, in the order in which they win when several apply (the first one that applies is
the reply's ``reason``):

1. ``gate_closed``        the gate is closed: nobody passes it, either way.
2. ``compound_sealed``    out, and the compound is sealed (its control level, or the quarantine
                          service sealed the whole compound): nobody leaves.
3. ``building_sealed``    out: the person's building is sealed; in: a visitor's host lives in a
                          sealed building.
4. ``under_quarantine``   out: the resident has a quarantine case (home or centralized, not yet
                          released), or their household is in home quarantine (its door is sealed,
                          so nobody of it goes out; a pass names a household, so a pass alone is
                          judged by this); in: a visitor's host household is in home quarantine.
5. ``awaiting_result``    out: the resident named was sampled in a screening round (or a sample)
                          that told them to stay in until their result is back, and it is not
                          recorded yet. It is a person's order: a pass alone names a household,
                          not who holds it, so the resident must be named (the gate scans their
                          code) for it to apply.
6. ``fever``              temperature_c at or over the configured threshold (``config.fever_c``,
                          37.3 °C by default), either way, anyone.
7. ``unknown_resident``   the resident id is not a resident of this compound (never registered,
                          moved out, or living elsewhere: register them as a visitor).
8. ``no_valid_pass``      a pass was shown that is unknown, revoked, of another compound, or of
                          another household than the resident named with it; or, at level
                          ``closed`` or ``sealed``, a resident showed no pass.
9. ``visitors_not_admitted`` in: a visitor, and the level does not admit visitors (configured:
                          only ``open`` by default; ``sealed`` never does).

Why this order: first what no person at the gate can change (the gate, seals, quarantine and stay-in orders
given by the quarantine service), then the body (fever), then the papers (identity, pass), then the
visitors' policy. A quarantined person or a sealed building's resident is refused *out*; coming
*in* they are let home (entry follows the control level). A released case is in health
monitoring, which does not stop anyone at the gate. A fever always adds FeverDetected, whatever
reason wins, so the committee hears of it even at a closed gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.checkpoint.commands import CheckPassage
from services.checkpoint.config import Config
from services.checkpoint.domain import Compound, Control, known_compound, known_gate, opened
from shared.contracts.checkpoint import FeverDetected, PassageAllowed, PassageDenied
from shared.errors import NotFound
from shared.privacy import mask_name


@dataclass(frozen=True, slots=True, kw_only=True)
class Home:
    """A household as the gate sees it: where it lives, whether it is in home quarantine."""

    household: str
    community: str
    compound: str
    building: str | None
    home_quarantine: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Resident:
    resident: str
    household: str
    community: str
    compound: str
    building: str
    moved_out: bool = False
    #: Has a case in quarantine (home, centralized, transferred), not released or closed.
    quarantined: bool = False
    #: Sampled with the order to stay in until the result is back, and it is not back yet.
    awaiting_result: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass:
    pass_: str
    number: str
    community: str
    compound: str
    household: str
    revoked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the handler loaded: the place (directory, control stream, seals), the person and the
    service's settings (``config``: the fever threshold, the levels that admit visitors).

    ``home`` is the household of the resident named (if registered), else of the pass shown (if
    known), else the visitor's host household.
    """

    compound: Compound | None
    control: Control | None = None
    sealed_buildings: frozenset[str] = frozenset()
    compound_sealed: bool = False
    pass_: Pass | None = None
    resident: Resident | None = None
    home: Home | None = None
    config: Config = Config()


def decide(facts: Facts, cmd: CheckPassage) -> list[PassageAllowed | PassageDenied | FeverDetected]:
    """The passage's events: allowed or denied (with the reason), plus FeverDetected on a fever.

    Raises NotFound for an unknown compound, gate or visitor's host household: bad input, nothing
    is recorded.
    """
    compound = known_compound(facts.compound, cmd.community, cmd.compound)
    known_gate(compound, cmd.gate)
    if cmd.visitor is not None:
        _host_here(facts, cmd)
    why = reason(facts, cmd)
    when = at(cmd)
    home = facts.home
    who = dict(
        community=cmd.community, passage=_passage(cmd), compound=cmd.compound, gate=cmd.gate,
        direction=cmd.direction, temperature_c=cmd.temperature_c,
        resident=cmd.resident, household=home.household if home else None,
        pass_=facts.pass_.pass_ if facts.pass_ else None,
        visitor=mask_name(cmd.visitor.name) if cmd.visitor else None,
        pass_shown=cmd.pass_ is not None, building=home.building if home else None,
        destination=cmd.destination, checked_at=when, checked_by=cmd.actor,
    )
    events: list = [PassageAllowed(**who) if why is None else PassageDenied(reason=why, **who)]
    if fever(facts, cmd):
        events.append(FeverDetected(
            community=cmd.community, passage=who["passage"], compound=cmd.compound, gate=cmd.gate,
            temperature_c=cmd.temperature_c, resident=cmd.resident, household=who["household"],
            visitor=who["visitor"], direction=cmd.direction, threshold_c=facts.config.fever_c,
            detected_at=when, detected_by=cmd.actor))
    return events


def reason(facts: Facts, cmd: CheckPassage) -> str | None:
    """The reason the passage is denied, None if allowed (order: see the module docstring)."""
    control = facts.control or opened(cmd.community, cmd.compound)
    level = "sealed" if facts.compound_sealed else control.level
    out = cmd.direction == "out"
    visitor = cmd.visitor is not None
    if cmd.gate in control.closed_gates:
        return "gate_closed"
    if out and level == "sealed":
        return "compound_sealed"
    # Seals and quarantine stop residents going out and visitors coming in.
    blocked_way = out != visitor
    if blocked_way and _building_sealed(facts, cmd):
        return "building_sealed"
    if blocked_way and _quarantined(facts, visitor):
        return "under_quarantine"
    if out and not visitor and facts.resident is not None and facts.resident.awaiting_result:
        return "awaiting_result"
    if fever(facts, cmd):
        return "fever"
    if visitor:
        if not out and level not in facts.config.visitors_admitted:
            return "visitors_not_admitted"
        return None
    if cmd.resident is not None and not _resident_here(facts, cmd):
        return "unknown_resident"
    if not _pass_ok(facts, cmd, level):
        return "no_valid_pass"
    return None


def fever(facts: Facts, cmd: CheckPassage) -> bool:
    return cmd.temperature_c >= facts.config.fever_c


def _building_sealed(facts: Facts, cmd: CheckPassage) -> bool:
    home = facts.home
    return (home is not None and (home.community, home.compound) == (cmd.community, cmd.compound)
            and home.building in facts.sealed_buildings)


def _quarantined(facts: Facts, visitor: bool) -> bool:
    own = not visitor and facts.resident is not None and facts.resident.quarantined
    return own or (facts.home is not None and facts.home.home_quarantine)


def _resident_here(facts: Facts, cmd: CheckPassage) -> bool:
    r = facts.resident
    return r is not None and not r.moved_out and (r.community, r.compound) == (cmd.community, cmd.compound)


def _pass_ok(facts: Facts, cmd: CheckPassage, level: str) -> bool:
    if cmd.pass_ is None:
        return level == "open"
    p = facts.pass_
    if p is None or p.revoked or (p.community, p.compound) != (cmd.community, cmd.compound):
        return False
    return facts.resident is None or facts.resident.household == p.household


def _host_here(facts: Facts, cmd: CheckPassage) -> None:
    host, wanted = facts.home, cmd.visitor.host_household
    if host is None or host.household != wanted:
        raise NotFound(f"host household {wanted} is not registered", field="visitor.host_household")
    if (host.community, host.compound) != (cmd.community, cmd.compound):
        raise NotFound(f"host household {wanted} does not live in compound {cmd.compound}",
                       field="visitor.host_household")


def _passage(cmd: CheckPassage) -> str:
    if cmd.passage is None:
        raise ValueError("the passage id must be filled (the runtime does: commands.CREATES) before decide")
    return cmd.passage


def at(cmd) -> datetime:
    """A completed command's ``occurred_at`` (every checkpoint rule stamps its events with it)."""
    if cmd.occurred_at is None:
        raise ValueError("occurred_at must be filled (the runtime does) before decide")
    return cmd.occurred_at
