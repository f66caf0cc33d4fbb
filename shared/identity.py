"""Who is asking: Cordon's identities and their jurisdiction, by the administrative tree.

An identity is a NATS user. People and integrations live in the ``CITY`` account; Cordon's
services and its operators in the ``CORDON`` account (see :mod:`shared.auth`). What an identity
may do is written twice, from this one model: into its user JWT as NATS permissions (the server
refuses the rest whatever the client does), and as JWT *tags* the server stamps, verified, on every
request it carries into the ``CORDON`` account (``Nats-Request-Info``), so a service knows who asks
and checks the target of each command and query against the same jurisdiction.

Roles:

============== ================================ =========================================================
role           scope                            may
============== ================================ =========================================================
staff          a community                      that community's commands, queries and events
officer        a district or district.street    read everything under it; commands only in ``community``
                                                when one is given (a community under the scope)
city-system    the city                         exactly its grants: ``cmd:<service>.<command>``,
                                                ``qry:<view>``, ``evt`` (every event, city-wide)
gate           a community and a ``compound``   ``checkpoint.check_passage`` at that compound
operator       everything (account CORDON)      everything, ``$JS.API`` and issuing identities
service        its own subjects (account CORDON) answer its commands and queries, its consumers
============== ================================ =========================================================
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import msgspec

from shared.errors import CommandError, Invalid
from shared.subjects import check_community, check_scope, check_slug

ROLES = ("staff", "officer", "city-system", "gate", "operator", "service")
#: The actor prefix recorded on events for each role (``staff:li-wei``).
ACTOR_PREFIX = {"staff": "staff", "officer": "officer", "city-system": "city", "gate": "gate",
                "operator": "operator", "service": "system"}


class Forbidden(CommandError):
    """The caller is known, but this is outside what it may do; nothing was written."""

    code = "forbidden"


class Unauthenticated(CommandError):
    """The request carries no identity the service can trust."""

    code = "unauthenticated"


@dataclass(frozen=True, slots=True)
class Identity:
    """One identity: its name (a slug, unique city-wide), role and jurisdiction."""

    name: str
    role: str
    #: ``city``, a district, ``district.street`` or a community (``district.street.committee``)
    scope: str = "city"
    #: Where an officer may also send commands (a community under its scope), or a staff/gate's own.
    community: str | None = None
    #: A gate device's compound.
    compound: str | None = None
    #: A city system's grants: ``cmd:<service>.<command>``, ``qry:<view>``, ``evt``.
    grants: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_slug(self.name, "name")
        if self.role not in ROLES:
            raise Invalid(f"role {self.role!r} is not one of {', '.join(ROLES)}", field="role")
        check_scope(self.scope)
        if self.role in ("staff", "gate"):
            if self.scope.count(".") != 2:
                raise Invalid(f"a {self.role} identity's scope is a community (district.street.committee)",
                              field="scope")
            if self.community not in (None, self.scope):
                raise Invalid("a staff or gate identity acts in its own community only", field="community")
            object.__setattr__(self, "community", self.scope)
        if self.role == "gate" and not self.compound:
            raise Invalid("a gate identity needs its compound", field="compound")
        if self.role == "officer" and self.scope == "city":
            raise Invalid("an officer's scope is a district or district.street", field="scope")
        if self.community is not None:
            check_community(self.community)
            if not within(self.community, self.scope):
                raise Invalid(f"community {self.community} is not under scope {self.scope}", field="community")
        for grant in self.grants:
            if not (grant == "evt" or grant.startswith(("cmd:", "qry:"))):
                raise Invalid(f"grant {grant!r} must be cmd:<service>.<command>, qry:<view> or evt",
                              field="grants")

    @property
    def actor(self) -> str:
        """What Cordon records as ``actor`` for this identity's commands."""
        return f"{ACTOR_PREFIX[self.role]}:{self.name}"

    @property
    def trusted(self) -> bool:
        """Operators and services: no jurisdiction to check."""
        return self.role in ("operator", "service")

    # -- the JWT tags: how the identity travels, verified by the server ------------------------

    def tags(self) -> list[str]:
        tags = [f"role:{self.role}", f"scope:{self.scope}"]
        if self.community and self.role == "officer":
            tags.append(f"community:{self.community}")
        if self.compound:
            tags.append(f"compound:{self.compound}")
        tags += [f"grant:{g}" for g in self.grants]
        return tags

    @classmethod
    def from_tags(cls, name: str, tags: list[str]) -> "Identity":
        values: dict[str, list[str]] = {}
        for tag in tags:
            key, _, value = tag.partition(":")
            values.setdefault(key, []).append(value)
        one = lambda key: values.get(key, [None])[0]  # noqa: E731
        return cls(name=name, role=one("role") or "", scope=one("scope") or "city",
                   community=one("community"), compound=one("compound"), grants=tuple(values.get("grant", ())))

    # -- jurisdiction ------------------------------------------------------------------------

    def may_command(self, service: str, command: str) -> bool:
        """Whether this identity may send ``service.command`` at all (the target is checked apart)."""
        if self.trusted:
            return True
        if self.role == "city-system":
            return f"cmd:{service}.{command}" in self.grants
        if self.role == "gate":
            return (service, command) == ("checkpoint", "check_passage")
        return self.community is not None

    def acts_in(self, community: str) -> bool:
        """Whether a command of this identity may take effect in ``community``."""
        if self.trusted or self.role == "city-system":
            return True
        return self.community == community

    def may_query(self, view: str) -> bool:
        if self.role == "city-system":
            return f"qry:{view}" in self.grants
        return self.role != "gate"

    def reads(self, scope: str) -> bool:
        """Whether this identity may read ``scope`` (``city``, a district, … or a community)."""
        if self.trusted or self.role == "city-system":
            return True
        return self.role != "gate" and within(scope, self.scope)


def within(scope: str, outer: str) -> bool:
    """``changning.chengjiaqiao.nangong`` is within ``changning``, ``changning.chengjiaqiao`` and
    ``city``; nothing is within a community but itself."""
    return outer == "city" or scope == outer or scope.startswith(outer + ".")


class _RequestInfo(msgspec.Struct):
    """The fields of ``Nats-Request-Info`` that say who asks (the header also carries the caller's
    whole JWT, its connection's details and timing, which nothing here reads)."""

    name_tag: str
    tags: list[str] | None = None


_request_info = msgspec.json.Decoder(_RequestInfo)


def from_request_info(header: str | bytes | None) -> Identity | None:
    """The identity the server stamped on a request that crossed into the ``CORDON`` account
    (``Nats-Request-Info``, with the caller's verified JWT name and tags), or None when the
    request came from inside ``CORDON`` (a service or an operator: trusted). The ``name`` field
    of that header is the client's own connection name and is never used.

    On the hot path (every gate check of a gate device): only the two fields are decoded, and the
    identity they make is built once per name and tags (about 3 µs a request, against 40 or more
    to parse the whole header and check the identity every time)."""
    if not header:
        return None
    try:
        info = _request_info.decode(header)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Unauthenticated(f"the request's identity cannot be read ({type(exc).__name__})") from None
    return _identity(info.name_tag, tuple(info.tags or ()))


@functools.lru_cache(maxsize=4096)
def _identity(name: str, tags: tuple[str, ...]) -> Identity:
    # A refusal is not cached: it raises.
    try:
        return Identity.from_tags(name, list(tags))
    except Invalid as exc:
        raise Unauthenticated(f"identity {name!r} is not one Cordon issued: {exc.message}") from None
