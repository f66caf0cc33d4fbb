"""What the services check about who asks: defence in depth behind the NATS permissions.

NATS already refuses a client what its user JWT does not allow (see :mod:`shared.identity`). The
services check again, with the identity the server stamped on the request (``Nats-Request-Info``),
because a subject permission cannot see inside a command: whose case a ``release_case`` closes,
which community a resident lives in, which actor a payload names. Every refusal is
:class:`~shared.identity.Forbidden` (code ``forbidden``), says which rule and what to do, and
happens before anything is written.

A request without the header came from inside the ``CORDON`` account (a service, an operator, the
demo): trusted, checked as before. Cordon's own commands (reactions, schedulers) carry no caller.

The rules, in the order a command meets them:

1. the identity may send this command at all (:meth:`Identity.may_command`); the registry's
   identity commands only from inside ``CORDON`` (:data:`CORDON_ONLY`);
2. staff, officers and gates send on the scoped subject of a community they act in
   (``cordon.cmd.<service>.<command>.<community>``: their permissions allow nothing else);
3. the payload's ``actor`` is the identity's own (so ``system:*`` only from inside);
   its ``community``, when it has one, is the scoped subject's; a gate's ``compound`` its own;
4. every record the handler loads that belongs to a community (a case, a household, a request:
   any state with a ``community``) is one the identity acts in (:meth:`Caller.check_state`, run by
   :meth:`shared.context.Context.load`), so that another community's records are refused before
   the rules look at them: a domain refusal ("case c-1 is closed") would tell what is there;
5. every event the handler decides is in the scoped subject's community and in one the identity
   acts in (:meth:`Caller.check_event`, run by :meth:`shared.context.Context.append` and once more
   when the handler returns): otherwise the command is refused and none of its events or rows are
   written, nor its reply stored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from shared.identity import Forbidden, Identity, from_request_info
from shared.subjects import check_community

#: The header nats-server sets on a request that crossed a service import with ``share: true``.
REQUEST_INFO = "Nats-Request-Info"
#: Commands accepted only from inside the ``CORDON`` account (no identity, or an operator).
CORDON_ONLY = frozenset({("registry", "grant_identity"), ("registry", "revoke_identity"),
                         # an erasure is an operator's act on a legal basis; a read's record is the
                         # registry's own (its contact query issues it), never a caller's
                         ("registry", "erase_resident"), ("registry", "record_personal_data_view"),
                         ("registry", "apply_retention"),  # the registry's retention scheduler
                         # the same for visitors: a read's record, and the retention scheduler's shredding
                         ("checkpoint", "record_visitor_contact_view"), ("checkpoint", "shred_visitor_data")})
#: Queries answered only inside the ``CORDON`` account (the register of identities).
CORDON_ONLY_QUERIES = frozenset({"registry.identities"})
#: Roles whose permissions allow only scoped command subjects.
SCOPED_ROLES = ("staff", "officer", "gate")


def check_personal(identity: Identity | None, community: str, what: str,
                   whose: str = "the resident's own community") -> Identity:
    """Who may be shown people's names and phones (``registry.contact``, a visitor's
    ``checkpoint.visitor_contact``): staff of the person's own community (``whose``: the
    resident's, the visited one), and no one else. Not an operator, not Cordon's own services (no
    person to name in the record), not an officer of the street (they read figures, not people),
    not a city system whatever it is granted: a machine copying phone numbers is what the
    record of every read is there to stop. Returns the identity, to be named as the viewer."""
    if identity is None or identity.role != "staff":
        who = "a caller from inside Cordon" if identity is None else f"{identity.actor} ({identity.role})"
        raise Forbidden(f"{who} may not read {what}: names and phones are shown only to staff of "
                        f"{whose}, one read at a time, each recorded")
    if identity.community != community:
        raise Forbidden(f"{identity.actor} may not read {what}: it belongs to {community}; "
                        f"{_jurisdiction(identity)}")
    return identity


def identity_of(headers: Mapping[str, str] | None) -> Identity | None:
    """The identity a request carries (None: from inside ``CORDON``, trusted); raises
    :class:`~shared.identity.Unauthenticated` when the header is there but cannot be read."""
    return from_request_info(headers.get(REQUEST_INFO) if headers else None)


def inside(identity: Identity | None) -> bool:
    """From inside the ``CORDON`` account: a service or an operator."""
    return identity is None or identity.role == "operator"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command and on which subject: what each of its events is checked against.
    None in place of a Caller means one of the service's own commands (trusted)."""

    identity: Identity | None
    #: The community of a scoped subject, else None.
    community: str | None = None

    def check_state(self, stream_id: str, state: Any) -> None:
        """Raise Forbidden if the identity may not act on a record of another community."""
        community = getattr(state, "community", None)
        identity = self.identity
        if identity is not None and isinstance(community, str) and not identity.acts_in(community):
            raise Forbidden(f"{identity.actor} may not act on {stream_id}: it belongs to {community}; "
                            f"{_jurisdiction(identity)}")

    def check_event(self, community: str, event_type: str) -> None:
        """Raise Forbidden if the command may not record an event in ``community``."""
        if self.community is not None and community != self.community:
            raise Forbidden(
                f"this command would record {event_type} in {community}, but it was sent on the subject "
                f"of {self.community}: a command scoped to a community acts in that community only "
                "(send it on the subject of the community it concerns, if yours)", field="subject")
        identity = self.identity
        if identity is not None and not identity.acts_in(community):
            raise Forbidden(
                f"{identity.actor} may not act in {community} (this command would record {event_type} "
                f"there); {_jurisdiction(identity)}", field="community")


def check_command(identity: Identity | None, service: str, command: str, community: str | None) -> None:
    """Rules 1 and 2, before the payload is read: may this identity send this command on this subject?"""
    if (service, command) in CORDON_ONLY and not inside(identity):
        raise Forbidden(f"{service}.{command} is accepted only from inside Cordon (an operator's "
                        "credentials, e.g. `cordon identity`), never from the city's account")
    if identity is None:
        return
    if not identity.may_command(service, command):
        raise Forbidden(f"{identity.actor} ({identity.role}) may not send {service}.{command}; "
                        f"{_jurisdiction(identity)}", field="subject")
    if community is None and identity.role in SCOPED_ROLES:
        raise Forbidden(f"a {identity.role} sends commands on the subject of its community: "
                        f"cordon.cmd.{service}.{command}.<district>.<street>.<committee>", field="subject")
    if community is not None and not identity.acts_in(community):
        raise Forbidden(f"{identity.actor} may not act in {community}; {_jurisdiction(identity)}",
                        field="subject")


def check_payload(identity: Identity | None, community: str | None, cmd: Any) -> None:
    """Rule 3, on the decoded command: its actor, community and (for a gate) compound."""
    said = getattr(cmd, "community", None)
    if community is not None and said is not None and said != community:
        raise Forbidden(f"the command names community {said} but was sent on the subject of {community}: "
                        "they must be the same", field="community")
    if identity is None or identity.trusted:
        return
    if cmd.actor != identity.actor:
        raise Forbidden(f"actor {cmd.actor!r} is not who sends it: these credentials act as "
                        f"{identity.actor!r}; put that in actor", field="actor")
    if identity.role == "gate" and getattr(cmd, "compound", None) != identity.compound:
        raise Forbidden(f"gate device {identity.name} checks passage at compound {identity.compound} "
                        f"only, not at {getattr(cmd, 'compound', None)}", field="compound")


def check_query(identity: Identity | None, view: str, payload: bytes) -> None:
    """May this identity ask ``view``, for the ``community`` or ``scope`` its payload names?
    Queries that name no place (a resident, a volunteer, an actor) narrow their answer themselves
    (:func:`reads`)."""
    if view in CORDON_ONLY_QUERIES and not inside(identity):
        raise Forbidden(f"{view} is answered only inside Cordon (an operator's credentials)")
    if identity is None:
        return
    if not identity.may_query(view):
        raise Forbidden(f"{identity.actor} ({identity.role}) may not query {view}; "
                        f"{_jurisdiction(identity)}", field="subject")
    try:
        fields = json.loads(payload) if payload.strip() else None
    except ValueError:
        return  # the query itself says what is wrong with it (invalid)
    if isinstance(fields, dict):
        for key in ("community", "scope"):
            place = fields.get(key)
            if isinstance(place, str) and not reads(identity, place):
                raise Forbidden(f"{identity.actor} may not read {place}; {_jurisdiction(identity)}",
                                field=key)


def reads(identity: Identity | None, place: str | None) -> bool:
    """Whether the identity reads ``place`` (a community or a prefix of the tree; None: nothing
    known, readable only from inside Cordon or city-wide)."""
    if identity is None:
        return True
    if place is None:
        return identity.reads("city")
    return identity.reads(place)


def forbid_unreadable(identity: Identity | None, places: set[str], what: str) -> None:
    """Refuse an answer that would show something of a community the identity does not read."""
    hidden = sorted(p for p in places if not reads(identity, p))
    if hidden:
        raise Forbidden(f"{identity.actor} may not read {what}: it belongs to {', '.join(hidden)}; "
                        f"{_jurisdiction(identity)}")


def scoped_community(community: str | None) -> str | None:
    """The community of a scoped subject, validated (``invalid`` naming the subject)."""
    return None if community is None else check_community(community, "subject")


def _jurisdiction(identity: Identity) -> str:
    if identity.role == "city-system":
        granted = ", ".join(identity.grants) or "nothing"
        return f"it is granted {granted}; ask the operators for another grant"
    if identity.role == "gate":
        return f"a gate device checks passage at compound {identity.compound} of {identity.community} only"
    where = f"it reads {identity.scope}"
    if identity.community:
        where += f" and acts in {identity.community}"
    else:
        where += " and sends no commands"
    return where + "; ask that community's staff, or the operators for another identity"
