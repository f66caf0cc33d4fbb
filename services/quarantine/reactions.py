"""Reactions to other services' events, as pure ``react(config, envelope, event) -> [(command, cmd)]``
(``app.py`` gets each one's :class:`ReactionSpec` with the settings bound).

Each command's id, case id and time derive from the event, so a redelivered or replayed event
yields the stored reply and writes nothing new. A refusal (the resident already has an open case,
an unknown resident) is final and logged by the host; ``unavailable`` is retried.
"""
from __future__ import annotations

import uuid
from functools import partial

from services.quarantine.commands import OpenCase, validate
from services.quarantine.config import Config
from shared import log as logging
from shared.contracts.checkpoint import FeverDetected
from shared.contracts.registry import ArrivalVerified
from shared.envelope import Event, RawEnvelope
from shared.errors import Invalid
from shared.service import ReactionSpec
from shared.subjects import event_filters

log = logging.get("quarantine.reactions")

#: Case ids opened by a reaction are uuid5(this, event id): the same event, the same case.
CASE_NAMESPACE = uuid.UUID("5f0c2a8e-1f39-4c1b-9a57-6a2f3c0e8d41")
ARRIVAL_KINDS = {"home_quarantine": "home", "centralized_quarantine": "centralized"}


def case_for(event_id: str) -> str:
    return str(uuid.uuid5(CASE_NAMESPACE, event_id))


def _command(raw: RawEnvelope, reaction: str, **fields) -> list[tuple[str, OpenCase]]:
    # Command ids and actors keep the names the reactions had when they were called policies:
    # stored replies are found by command id, so a replayed event must give the same one.
    try:
        cmd = validate(OpenCase(
            command_id=f"{reaction}:{raw.event_id}", actor=f"system:{reaction}",
            occurred_at=raw.occurred_at, correlation_id=raw.correlation_id, causation_id=raw.event_id,
            case=case_for(raw.event_id), **fields,
        ))
    except Invalid as err:  # another service's event we cannot act on: say so, do not block the stream
        log.warning("policy.unusable_event", policy=reaction, event_id=raw.event_id, error=err.message)
        return []
    return [("open_case", cmd)]


def arrival_quarantine(config: Config, raw: RawEnvelope, event: Event) -> list[tuple[str, OpenCase]]:
    """ArrivalVerified with home or centralized quarantine opens a case (reason arrival) that
    starts on the day of the verification."""
    if not isinstance(event, ArrivalVerified) or event.outcome not in ARRIVAL_KINDS:
        return []
    return _command(raw, "arrival-quarantine", community=event.community, resident=event.resident,
                    kind=ARRIVAL_KINDS[event.outcome], reason="arrival",
                    starts_on=config.day(event.verified_at), household=event.household,
                    compound=event.compound, building=event.building)


def fever_monitoring(config: Config, raw: RawEnvelope, event: Event) -> list[tuple[str, OpenCase]]:
    """FeverDetected naming a resident opens a monitoring case (reason fever), unless the resident
    already has an open case (then the refusal ``case_open`` is logged and that is all)."""
    if not isinstance(event, FeverDetected) or event.resident is None:
        return []
    where = {"household": event.household, "compound": event.compound} if event.household else {}
    return _command(raw, "fever-monitoring", community=event.community, resident=event.resident,
                    kind="monitoring", reason="fever", starts_on=config.day(event.detected_at), **where)


# The durable consumer names are deployed state (JetStream consumers and their positions): kept.


def arrivals(config: Config) -> ReactionSpec:
    return ReactionSpec(name="quarantine-arrivals", subjects=event_filters("registry", "ArrivalVerified"),
                        react=partial(arrival_quarantine, config))


def fevers(config: Config) -> ReactionSpec:
    return ReactionSpec(name="quarantine-fevers", subjects=event_filters("checkpoint", "FeverDetected"),
                        react=partial(fever_monitoring, config))
