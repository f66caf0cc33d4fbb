"""The scenario's own book of what happened on the day, per community: what it sent, which of it
was accepted (from the replies), and what the reactions of CONTRACT.md make of it. From the book
come the figures the committee's board must show. Pure: no I/O.

The reactions the book follows (CONTRACT.md, "reactions"):
- an arrival verified as home/centralized quarantine opens a case of that kind;
- a fever at a gate of a named resident with no open case opens a monitoring case;
- a home case, and a sealed building, put the household on the daily food supply, whose first
  request is raised at once; a transfer ends the supply for that case.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from services.demo.gates import FIGURES as GATE_WORK

#: The figures of a board, as the views' ``figures`` name them (stock items follow as ``stock.<item>``).
FIGURES = (
    "residents", "households", "arrivals_14d", "arrivals_pending",
    "quarantine_home", "quarantine_centralized", "quarantine_monitoring", "quarantine_hospital",
    "sealed_compounds", "sealed_buildings", "passes_active",
    "passages_in", "passages_out", "passages_denied", "fevers", "checkins_missed", "positive_results",
    "requests_open", "deliveries", "welfare_checks_open", "daily_supply_households",
    "group_orders_open", "group_orders_delivered",
    "results_pending",
    *GATE_WORK,
    "calls", "calls_reached", "tip_offs_open", "tip_offs_followed_up",
)
FLOWS = ("passages_in", "passages_out", "passages_denied", "fevers", "checkins_missed",
         "positive_results", "deliveries", "group_orders_delivered", *GATE_WORK,
         "calls", "calls_reached", "tip_offs_followed_up")
WINDOW_DAYS = 14
#: What the committee keeps in its store (medicine is fetched from the pharmacy per request).
STOCKED = frozenset({"vegetable-pack", "food-set", "rice", "cooking-oil", "eggs", "milk", "masks",
                     "disinfectant", "thermometer", "heater", "tent"})


@dataclass
class Case:
    community: str
    household: str
    kind: str
    #: The case's id when the scenario knows it (it opened it, or read it from quarantine.cases).
    id: str | None = None


@dataclass
class Book:
    residents: dict[str, str] = field(default_factory=dict)  # resident -> community
    households: dict[str, str] = field(default_factory=dict)  # household -> community
    #: arrival -> (community, arrived_on, pending verification)
    arrivals: dict[str, tuple[str, date, bool]] = field(default_factory=dict)
    cases: dict[str, Case] = field(default_factory=dict)  # resident -> open case
    seals: set[tuple[str, str, str | None]] = field(default_factory=set)
    passes: Counter = field(default_factory=Counter)  # community -> active passes
    flows: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    requests: dict[str, str] = field(default_factory=dict)  # open request -> community
    daily: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # household -> (community, causes)
    daily_requested: set[str] = field(default_factory=set)  # households whose first daily request exists
    welfare: dict[str, str] = field(default_factory=dict)  # household -> community (open checks)
    stock: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    group_orders: dict[str, str] = field(default_factory=dict)  # open group order -> community
    #: community -> team -> volunteers' minutes of the day (services/demo/logistics.py)
    volunteer_minutes: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    samples: dict[str, str] = field(default_factory=dict)  # sample (screening/resident) -> community, result pending
    tip_offs: dict[str, str] = field(default_factory=dict)  # open tip-off -> community

    # -- registry -------------------------------------------------------------------------------

    def household(self, community: str, household: str) -> None:
        self.households[household] = community

    def resident(self, community: str, resident: str) -> None:
        self.residents[resident] = community

    def arrival(self, community: str, arrival: str, arrived_on: date, needs_verification: bool) -> None:
        self.arrivals[arrival] = (community, arrived_on, needs_verification)

    def verified(self, arrival: str, outcome: str, resident: str, household: str) -> None:
        community, arrived_on, _ = self.arrivals[arrival]
        self.arrivals[arrival] = (community, arrived_on, False)
        kind = {"home_quarantine": "home", "centralized_quarantine": "centralized"}.get(outcome)
        if kind is not None:
            self.case_opened(community, resident, household, kind)

    def called(self, community: str, outcome: str) -> None:
        self.flows[community]["calls"] += 1
        self.flows[community]["calls_reached"] += outcome.startswith("reached_")

    def tipped(self, community: str, tip_off: str) -> None:
        self.tip_offs[tip_off] = community

    def followed_up(self, community: str, tip_off: str) -> None:
        del self.tip_offs[tip_off]
        self.flows[community]["tip_offs_followed_up"] += 1

    # -- quarantine -----------------------------------------------------------------------------

    def case_opened(self, community: str, resident: str, household: str, kind: str, case: str | None = None) -> bool:
        """A case opens unless the resident already has one (the service refuses a second)."""
        if resident in self.cases:
            return False
        self.cases[resident] = Case(community, household, kind, case)
        if kind == "home":
            self._confine(community, household, f"case:{resident}")
        return True

    def transferred(self, resident: str, to: str) -> None:
        case = self.cases[resident]
        was_home = case.kind == "home"
        case.kind = to
        if was_home:
            self._free(case.household, f"case:{resident}")

    def sealed(self, community: str, compound: str, building: str | None, households: list[str]) -> None:
        self.seals.add((community, compound, building))
        for household in households:
            self._confine(community, household, f"seal:{compound}:{building}")

    def sampled(self, community: str, sample: str) -> None:
        self.samples[sample] = community

    def result(self, sample: str) -> None:
        self.samples.pop(sample, None)

    def missed(self, community: str, n: int) -> None:
        self.flows[community]["checkins_missed"] += n

    # -- checkpoint -----------------------------------------------------------------------------

    def passes_issued(self, community: str, n: int) -> None:
        self.passes[community] += n

    def passage(self, community: str, direction: str, allowed: bool, fever: bool,
                resident: str | None, household: str | None) -> None:
        flows = self.flows[community]
        flows["passages_denied" if not allowed else f"passages_{direction}"] += 1
        if fever:
            flows["fevers"] += 1
            if resident is not None:
                self.case_opened(community, resident, household or "", "monitoring")

    # -- logistics ------------------------------------------------------------------------------

    def received(self, community: str, items: dict[str, int]) -> None:
        self.stock[community].update(items)

    def requested(self, community: str, request: str) -> None:
        self.requests[request] = community

    def assigned(self, community: str, items: dict[str, int]) -> None:
        self.stock[community].subtract({k: n for k, n in items.items() if k in STOCKED})

    def delivered(self, request: str) -> None:
        community = self.requests.pop(request)
        self.flows[community]["deliveries"] += 1

    def not_answered(self, community: str, household: str, items: dict[str, int], vulnerable: bool) -> None:
        """Nobody opened: the goods go back to the store, the request stays open for another try,
        and at a vulnerable household a welfare check is raised (one open check per household)."""
        self.stock[community].update({k: n for k, n in items.items() if k in STOCKED})
        if vulnerable:
            self.welfare[household] = community

    def redeemed(self, community: str, qty: int) -> None:
        self.stock[community]["masks"] -= qty

    def group_order(self, community: str, order: str) -> None:
        self.group_orders[order] = community

    def group_order_delivered(self, order: str) -> None:
        self.flows[self.group_orders[order]]["group_orders_delivered"] += 1

    def group_order_handed_out(self, order: str, complete: bool) -> None:
        if complete:
            del self.group_orders[order]

    def _confine(self, community: str, household: str, cause: str) -> None:
        _, causes = self.daily.setdefault(household, (community, set()))
        causes.add(cause)
        if household not in self.daily_requested:  # the first day's food is requested at once
            self.daily_requested.add(household)
            self.requests[f"daily:{household}"] = community

    def _free(self, household: str, cause: str) -> None:
        self.daily[household][1].discard(cause)

    def daily_request_seen(self, household: str, request: str) -> None:
        """The daily request of ``household`` read back (logistics.requests): book it under its id."""
        community = self.requests.pop(f"daily:{household}")
        self.requests[request] = community

    # -- the board ------------------------------------------------------------------------------

    def figures(self, community: str, on: date) -> dict[str, int]:
        """What the committee's board must show at the end of ``on`` (everything booked is of that day)."""
        out = dict.fromkeys(FIGURES, 0)
        out["residents"] = _count(self.residents.values(), community)
        out["households"] = _count(self.households.values(), community)
        first = on - timedelta(days=WINDOW_DAYS - 1)
        for c, arrived_on, pending in self.arrivals.values():
            if c == community:
                out["arrivals_14d"] += first <= arrived_on <= on
                out["arrivals_pending"] += pending
        for case in self.cases.values():
            if case.community == community:
                out[f"quarantine_{case.kind}"] += 1
        for c, _, building in self.seals:
            if c == community:
                out["sealed_buildings" if building else "sealed_compounds"] += 1
        out["passes_active"] = self.passes[community]
        out.update({k: self.flows[community][k] for k in FLOWS})
        out["requests_open"] = _count(self.requests.values(), community)
        out["welfare_checks_open"] = _count(self.welfare.values(), community)
        out["tip_offs_open"] = _count(self.tip_offs.values(), community)
        out["daily_supply_households"] = sum(1 for c, causes in self.daily.values() if c == community and causes)
        out["results_pending"] = _count(self.samples.values(), community)
        out.update({f"stock.{item}": n for item, n in sorted(self.stock[community].items())})
        out["group_orders_open"] = _count(self.group_orders.values(), community)
        out.update({f"volunteer_minutes.{team}": n for team, n in self.volunteer_minutes[community].items()})
        return out

    def communities(self) -> list[str]:
        return sorted(set(self.households.values()))


def _count(values, community: str) -> int:
    return sum(1 for v in values if v == community)


def differences(expected: dict[str, int], shown: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Figure -> (expected, shown) where they differ; figures missing on either side count as 0."""
    keys = set(expected) | set(shown)
    return {k: (expected.get(k, 0), shown.get(k, 0)) for k in sorted(keys)
            if expected.get(k, 0) != shown.get(k, 0)}
