"""Public events of the registry service.

Personal data stays home: names, ID-card numbers and phones never appear here; a resident is
its opaque id and, at most, a masked display name (王*伟).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from shared.envelope import Event, event_type

SERVICE = "registry"
Vulnerability = Literal["elderly_alone", "limited_mobility", "chronic_illness", "medical_device"]
CityClass = Literal["A", "B"]
Outcome = Literal["cleared", "home_quarantine", "centralized_quarantine", "returned_home"]


class Transport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["train", "flight", "road", "other"]
    number: str | None = None


class Visit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}):
    place: str
    from_: date
    to: date


@event_type(SERVICE)
class CompoundRegistered(Event, frozen=True, kw_only=True):
    compound: str
    name: str
    buildings: list[str]
    gates: list[str]
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class HouseholdRegistered(Event, frozen=True, kw_only=True):
    compound: str
    building: str
    household: str
    address: str
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class ResidentRegistered(Event, frozen=True, kw_only=True):
    compound: str
    building: str
    household: str
    resident: str
    display_name: str
    birth_year: int
    vulnerabilities: list[Vulnerability] = []
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class ArrivalRegistered(Event, frozen=True, kw_only=True):
    arrival: str
    resident: str
    household: str
    compound: str
    building: str
    origin: str
    arrived_on: date
    transport: Transport
    visited: list[Visit] = []
    city_class: CityClass
    risk_area_visited: bool
    #: False for a class-B arrival that visited no risk area: cleared on registration.
    requires_verification: bool
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class ArrivalVerified(Event, frozen=True, kw_only=True):
    arrival: str
    resident: str
    household: str
    compound: str
    building: str
    outcome: Outcome
    documents_checked: bool
    note: str | None = None
    verified_at: datetime
    verified_by: str


@event_type(SERVICE)
class ResidentMovedOut(Event, frozen=True, kw_only=True):
    resident: str
    household: str
    compound: str
    building: str
    reason: str | None = None
    moved_out_at: datetime
    moved_out_by: str
