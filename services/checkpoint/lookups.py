"""The facts a batch of passages needs, read with ONE query per batch, not per passage.

A passage reads the directory (compound, resident, household), the passes table, the seals and the
quarantine copy. One query per passage would make the database round trip the cost of the hot path,
so the runtime's ``prepare_batch`` hook (``handlers.prepare_batch``) has :func:`load` read the facts
of every check_passage of the batch at once into the batch's scratch (``Scratch.lookups``);
:func:`facts` then answers each handler from there (and loads on its own what is missing, e.g. a
command run outside a batch).

Passes issued or revoked earlier in the same batch are not in the table yet (their rows are written
at commit): handlers record them in the scratch (``Scratch.issued``, ``Scratch.revoked``) and
:func:`facts` lays them over the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from services.checkpoint import passage
from services.checkpoint.commands import CheckPassage
from services.checkpoint.copies import COMPOUND
from services.checkpoint.domain import Compound

if TYPE_CHECKING:
    from services.checkpoint.handlers import Scratch

_HOME_Q = """EXISTS (SELECT 1 FROM checkpoint.q_cases q
                     WHERE q.household = {h} AND q.status = 'quarantine' AND q.at_home)"""

#: Everything a batch of passages needs, in ONE round trip: each part an array of row tuples.
FACTS = f"""
WITH places AS (
    SELECT c.community, c.compound, c.buildings, c.gates,
           array(SELECT s.building FROM checkpoint.sealed_areas s
                 WHERE s.community = c.community AND s.compound = c.compound) AS sealed
    FROM checkpoint.dir_compounds c
    JOIN unnest($1::text[], $2::text[]) AS k(community, compound)
      ON c.community = k.community AND c.compound = k.compound),
passes AS (
    SELECT p.pass, p.number, p.community, p.compound, p.household, p.revoked_at IS NOT NULL AS revoked,
           h.building, {_HOME_Q.format(h="p.household")} AS home_quarantine
    FROM checkpoint.passes p LEFT JOIN checkpoint.dir_households h ON h.household = p.household
    WHERE p.pass = ANY($3::text[]) OR p.number = ANY($3::text[])),
residents AS (
    SELECT r.resident, r.household, r.community, r.compound, r.building, r.moved_out,
           EXISTS (SELECT 1 FROM checkpoint.q_cases q
                   WHERE q.resident = r.resident AND q.status = 'quarantine') AS quarantined,
           {_HOME_Q.format(h="r.household")} AS home_quarantine,
           EXISTS (SELECT 1 FROM checkpoint.awaiting_results a WHERE a.resident = r.resident) AS awaiting_result
    FROM checkpoint.dir_residents r WHERE r.resident = ANY($4::text[])),
households AS (
    SELECT h.household, h.community, h.compound, h.building, {_HOME_Q.format(h="h.household")} AS home_quarantine
    FROM checkpoint.dir_households h WHERE h.household = ANY($5::text[]))
SELECT (SELECT array_agg(places) FROM places) AS places, (SELECT array_agg(passes) FROM passes) AS passes,
       (SELECT array_agg(residents) FROM residents) AS residents,
       (SELECT array_agg(households) FROM households) AS households
"""


@dataclass
class Place:
    compound: Compound
    sealed_buildings: frozenset[str]
    compound_sealed: bool


@dataclass
class Loaded:
    """One batch's facts; None records a miss (unknown compound, pass, resident, household)."""

    places: dict[tuple[str, str], Place | None] = field(default_factory=dict)
    passes: dict[str, tuple[passage.Pass, passage.Home] | None] = field(default_factory=dict)
    residents: dict[str, tuple[passage.Resident, passage.Home] | None] = field(default_factory=dict)
    households: dict[str, passage.Home | None] = field(default_factory=dict)

    def has(self, cmd: CheckPassage) -> bool:
        return ((cmd.community, cmd.compound) in self.places
                and (cmd.pass_ is None or cmd.pass_ in self.passes)
                and (cmd.resident is None or cmd.resident in self.residents)
                and (cmd.visitor is None or cmd.visitor.host_household in self.households))


async def facts(ctx, cmd: CheckPassage) -> passage.Facts:
    """The passage's facts, without the control state and config (the handler adds them)."""
    scratch: Scratch = ctx.scratch
    loaded = scratch.lookups
    if not loaded.has(cmd):
        await load(ctx.conn, loaded, [cmd])
    fresh = scratch.issued.get(cmd.pass_) if cmd.pass_ is not None else None
    if fresh is not None and fresh.household not in loaded.households:
        await load(ctx.conn, loaded, [], {fresh.household})
    return _facts(scratch, cmd)


async def load(conn, loaded: Loaded, cmds: list[CheckPassage], households: set[str] = frozenset()) -> None:
    """Load what ``cmds`` need and ``loaded`` lacks; record misses as None."""
    places = {(c.community, c.compound) for c in cmds} - loaded.places.keys()
    passes = {c.pass_ for c in cmds if c.pass_ is not None} - loaded.passes.keys()
    residents = {c.resident for c in cmds if c.resident is not None} - loaded.residents.keys()
    hosts = {c.visitor.host_household for c in cmds if c.visitor is not None} | set(households)
    hosts -= loaded.households.keys()
    row = await conn.fetchrow(FACTS, [p[0] for p in places], [p[1] for p in places], list(passes),
                              list(residents), list(hosts))
    loaded.places.update(dict.fromkeys(places))
    for community, compound, buildings, gates, sealed in row["places"] or ():
        loaded.places[(community, compound)] = Place(
            compound=Compound(community=community, compound=compound, buildings=tuple(buildings),
                              gates=tuple(gates)),
            sealed_buildings=frozenset(sealed) - {COMPOUND}, compound_sealed=COMPOUND in sealed)
    loaded.passes.update(dict.fromkeys(passes))
    for pass_, number, community, compound, household, revoked, building, home_q in row["passes"] or ():
        found = (passage.Pass(pass_=pass_, number=number, community=community, compound=compound,
                              household=household, revoked=revoked),
                 passage.Home(household=household, community=community, compound=compound, building=building,
                              home_quarantine=home_q))
        loaded.passes[pass_] = loaded.passes[number] = found
    loaded.residents.update(dict.fromkeys(residents))
    for resident, household, community, compound, building, moved_out, quarantined, home_q, awaiting \
            in row["residents"] or ():
        loaded.residents[resident] = (
            passage.Resident(resident=resident, household=household, community=community, compound=compound,
                             building=building, moved_out=moved_out, quarantined=quarantined,
                             awaiting_result=awaiting),
            passage.Home(household=household, community=community, compound=compound, building=building,
                         home_quarantine=home_q))
    loaded.households.update(dict.fromkeys(hosts))
    for household, community, compound, building, home_q in row["households"] or ():
        loaded.households[household] = passage.Home(household=household, community=community, compound=compound,
                                                    building=building, home_quarantine=home_q)


def _facts(scratch: Scratch, cmd: CheckPassage) -> passage.Facts:
    loaded = scratch.lookups
    place = loaded.places.get((cmd.community, cmd.compound))
    shown = _shown(scratch, cmd.pass_) if cmd.pass_ is not None else None
    resident = loaded.residents.get(cmd.resident) if cmd.resident is not None else None
    if cmd.visitor is not None:
        home = loaded.households.get(cmd.visitor.host_household)
    elif resident is not None:
        home = resident[1]
    else:
        home = shown[1] if shown else None
    return passage.Facts(
        compound=place.compound if place else None,
        sealed_buildings=place.sealed_buildings if place else frozenset(),
        compound_sealed=place.compound_sealed if place else False,
        pass_=shown[0] if shown else None, resident=resident[0] if resident else None, home=home)


def _shown(scratch: Scratch, key: str) -> tuple[passage.Pass, passage.Home | None] | None:
    """The pass shown, with what this batch did to passes (issued, revoked) laid over the table."""
    loaded = scratch.lookups
    fresh = scratch.issued.get(key)
    found = (fresh, loaded.households.get(fresh.household)) if fresh else loaded.passes.get(key)
    if found is None:
        return None
    p, home = found
    if p.pass_ in scratch.revoked:
        p = replace(p, revoked=True)
    return p, home
