"""Group orders (团购) of a compound from a supplier, pure: placed, delivered to a gate, handed out
building by building. :func:`services.logistics.decide.decide` calls these with the facts it holds.

Refusals: an unknown compound, gate or building is ``not_found``; handing out before the order is
at the gate (``not_delivered``), more households than ordered (``more_than_ordered``), a building
twice (``already_handed_out``), a second delivery (``already_delivered``) are ``rejected``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.logistics.commands import HandOutGroupOrder, PlaceGroupOrder, RecordGroupOrderDelivered
from services.logistics.domain import GroupOrder
from shared.contracts.logistics import GroupOrderDelivered, GroupOrderHandedOut, GroupOrderPlaced
from shared.errors import Conflict, NotFound, Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class Compound:
    """A compound as the directory knows it: its buildings and gates."""

    community: str
    compound: str
    buildings: frozenset[str]
    gates: frozenset[str]


def place(cmd: PlaceGroupOrder, at: datetime, compound: Compound | None,
          taken: GroupOrder | None) -> list[GroupOrderPlaced]:
    if compound is None or compound.community != cmd.community:
        raise NotFound(f"compound {cmd.compound} is not registered in {cmd.community}", field="compound")
    if taken is not None:
        raise Conflict(f"order id {cmd.order} is taken", field="order")
    assert cmd.order is not None  # filled by the runtime (CREATES)
    return [GroupOrderPlaced(community=cmd.community, order=cmd.order, compound=cmd.compound,
                             supplier=cmd.supplier.strip(), items=list(cmd.items), households=cmd.households,
                             placed_at=at, placed_by=cmd.actor)]


def delivered(cmd: RecordGroupOrderDelivered, at: datetime, order: GroupOrder | None,
              compound: Compound | None) -> list[GroupOrderDelivered]:
    o = _order(order, cmd.order)
    if o.delivered_at is not None:
        raise Rejected(f"order {o.order} was delivered to gate {o.gate} already", reason="already_delivered")
    if compound is None or cmd.gate not in compound.gates:
        raise NotFound(f"gate {cmd.gate} is not a gate of compound {o.compound}", field="gate")
    return [GroupOrderDelivered(community=o.community, order=o.order, compound=o.compound, gate=cmd.gate,
                                delivered_at=at, delivered_by=cmd.actor)]


def hand_out(cmd: HandOutGroupOrder, at: datetime, order: GroupOrder | None,
             compound: Compound | None) -> list[GroupOrderHandedOut]:
    o = _order(order, cmd.order)
    if o.delivered_at is None:
        raise Rejected(f"order {o.order} is not at the gate yet: record its delivery first",
                       reason="not_delivered")
    if compound is None or cmd.building not in compound.buildings:
        raise NotFound(f"building {cmd.building} is not in compound {o.compound}", field="building")
    if cmd.building in o.buildings:
        raise Rejected(f"building {cmd.building}'s share of order {o.order} was handed out already "
                       f"({o.buildings[cmd.building]} households)", reason="already_handed_out")
    left = o.households - o.handed_out
    if cmd.households > left:
        raise Rejected(f"order {o.order} is for {o.households} households and {o.handed_out} are served: "
                       f"at most {left} more", field="households", reason="more_than_ordered")
    served = o.handed_out + cmd.households
    return [GroupOrderHandedOut(community=o.community, order=o.order, compound=o.compound,
                                building=cmd.building, households=cmd.households, handed_out=served,
                                complete=served == o.households, handed_out_at=at, handed_out_by=cmd.actor)]


def _order(order: GroupOrder | None, order_id: str) -> GroupOrder:
    if order is None:
        raise NotFound(f"group order {order_id} does not exist", field="order")
    return order
