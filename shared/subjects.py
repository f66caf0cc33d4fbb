"""Community paths and NATS subjects: the administrative tree is the subject tree.

A community is ``<district>.<street>.<committee>``, each token a slug (``a-z``, ``0-9``, ``-``).
Events go to ``cordon.evt.<community>.<service>.<EventType>``, commands to
``cordon.cmd.<service>.<command>`` or, scoped to a community (what NATS permissions of a
community's identities allow), ``cordon.cmd.<service>.<command>.<district>.<street>.<committee>``;
queries to ``cordon.qry.<view>``.
"""
from __future__ import annotations

import functools
import re

from shared.errors import Invalid

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})$")
EVENT_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
STREAM = "CORDON"
EVENTS_ROOT = "cordon.evt"
COMMANDS_ROOT = "cordon.cmd"
QUERIES_ROOT = "cordon.qry"
#: Every running service instance answers a ping here with its status (see shared.service).
HEALTH_FANOUT = "cordon.sys.health"
SERVICES = ("registry", "checkpoint", "quarantine", "logistics")


def check_slug(value: object, field: str = "id") -> str:
    """Return ``value`` if it is a slug, else raise :class:`Invalid` naming the field."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"{field} must be a non-empty slug (a-z, 0-9, '-')", field=field)
    if not SLUG.match(value):
        raise Invalid(
            f"{field} {value!r} is not a slug: use lowercase a-z, 0-9 and '-', at most 63 "
            "characters, starting with a letter or digit; never '.', '*', '>' or spaces",
            field=field,
        )
    return value


def check_community(value: object, field: str = "community") -> str:
    """Return ``value`` if it is a ``district.street.committee`` path, else raise Invalid."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"{field} must be a path district.street.committee", field=field)
    tokens = value.split(".")
    if len(tokens) != 3:
        raise Invalid(
            f"{field} {value!r} must have exactly three tokens, district.street.committee "
            "(e.g. changning.chengjiaqiao.nangong)",
            field=field,
        )
    for name, token in zip(("district", "street", "committee"), tokens):
        if not token or not SLUG.match(token):
            raise Invalid(
                f"{field} {value!r}: the {name} {token!r} is not a slug (lowercase a-z, 0-9 and '-'; "
                "never '.', '*', '>', spaces or an empty part)",
                field=field,
            )
    return value


def check_scope(value: object, field: str = "scope") -> str:
    """A prefix of the tree: ``city``, a district, ``district.street`` or a full community."""
    if value == "city":
        return value
    if not isinstance(value, str) or not value:
        raise Invalid(f"{field} must be 'city' or a path prefix like 'changning'", field=field)
    tokens = value.split(".")
    if len(tokens) > 3:
        raise Invalid(f"{field} {value!r} has more than three tokens", field=field)
    for token in tokens:
        check_slug(token, field)
    return value


@functools.lru_cache(maxsize=65536)  # on the hot path of every append; inputs repeat
def event_subject(community: str, service: str, event_type: str) -> str:
    """``cordon.evt.<community>.<service>.<EventType>``, validating every token."""
    check_community(community)
    if service not in SERVICES:
        raise Invalid(f"unknown service {service!r}", field="service")
    if not EVENT_TYPE.match(event_type):
        raise Invalid(f"event type {event_type!r} must be CamelCase", field="type")
    return f"{EVENTS_ROOT}.{community}.{service}.{event_type}"


def community_filter(scope: str) -> str:
    """The wildcard subject a client subscribes to for a scope of the tree."""
    if check_scope(scope) == "city":
        return f"{EVENTS_ROOT}.>"
    return f"{EVENTS_ROOT}.{scope}.>"


def service_filter(service: str) -> str:
    """Every event a service publishes, in any community."""
    return f"{EVENTS_ROOT}.*.*.*.{service}.>"


def event_filters(service: str, *event_types: str) -> list[str]:
    """The subjects of some of a service's event types, in every community (a consumer's filter)."""
    for event_type in event_types:
        if not EVENT_TYPE.match(event_type):
            raise ValueError(f"event type {event_type!r} must be CamelCase")
    return [f"{EVENTS_ROOT}.*.*.*.{service}.{t}" for t in event_types]


def command_subject(service: str, command: str, community: str | None = None) -> str:
    """``cordon.cmd.<service>.<command>``, or with ``community`` the scoped form
    ``cordon.cmd.<service>.<command>.<district>.<street>.<committee>``: where a command is sent."""
    if community is None:
        return f"{COMMANDS_ROOT}.{service}.{command}"
    return f"{COMMANDS_ROOT}.{service}.{command}.{check_community(community, 'subject')}"


def command_filter(service: str) -> str:
    """Every command of a service, scoped or not: what its instances subscribe to (one queue group)."""
    return f"{COMMANDS_ROOT}.{service}.>"


def command_name(service: str, subject: str) -> tuple[str, str | None]:
    """The command a subject of :func:`command_filter` names, and the community of a scoped
    subject (None when unscoped). Not validated: a name the service does not know is its
    ``unknown_command``, a community that is no path its ``invalid``. Anything but one token or
    four (command + district.street.committee) is returned whole as the name (unknown)."""
    rest = subject[len(COMMANDS_ROOT) + len(service) + 2:]
    tokens = rest.split(".")
    if len(tokens) == 4:
        return tokens[0], ".".join(tokens[1:])
    return rest, None


def query_subject(view: str) -> str:
    """``cordon.qry.<view>``: where a query is sent."""
    return f"{QUERIES_ROOT}.{view}"
