"""The AsyncAPI 3 document of Cordon's message API, generated from the code.

Command payloads come from each service's command structs, event payloads from the registered
event types in ``shared.contracts``, queries' requests and replies from
``shared.contracts.queries.QUERIES``. The generated document is committed at
``shared/contracts/asyncapi.json`` and a test fails when it differs from what the code generates,
so integrators never read stale docs. Regenerate with ``cordon asyncapi --write``.
"""
from __future__ import annotations

import json
from pathlib import Path

import msgspec

from shared import envelope as env
from shared.access import CORDON_ONLY
from shared.contracts.queries import Query
from shared.errors import CODES
from shared.subjects import COMMANDS_ROOT, HEALTH_FANOUT, command_subject, query_subject

PATH = Path(__file__).parent / "contracts" / "asyncapi.json"
REF = "#/components/schemas/{name}"


def reply_schemas(codes: dict[str, str] = CODES) -> dict:
    """``CommandAccepted`` and ``CommandRefused``, the replies of every command (a query's refusal
    is ``CommandRefused`` too); ``codes`` are the error codes a refusal may carry, with their meaning."""
    return {
        "CommandAccepted": {
            "type": "object",
            "required": ["ok", "stream_id", "version", "events"],
            "properties": {
                "ok": {"const": True},
                "stream_id": {"type": "string"},
                "version": {"type": "integer"},
                "events": {"type": "array", "items": {"$ref": REF.format(name="Envelope")}},
            },
        },
        "CommandRefused": {
            "type": "object",
            "required": ["ok", "error"],
            "properties": {
                "ok": {"const": False},
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"enum": sorted(codes), "description": "; ".join(
                            f"{k}: {v}" for k, v in sorted(codes.items()))},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "reason": {"type": "string", "description": "with code rejected: the rule"},
                    },
                },
            },
        },
    }


#: How a client proves who it is: NATS decentralized JWT authentication (see README "Who may do what").
SECURITY_SCHEMES = {
    "natsUserCredentials": {
        "type": "asymmetricEncryption",
        "description": "NATS decentralized JWT authentication: a .creds file issued by `cordon identity add` "
                       "(a user JWT signed by the account, and the user's nkey seed, which signs the server's "
                       "challenge). The JWT's permissions and tags say what the identity may do: staff of a "
                       "community, an officer of a street or district, a city system with grants, a gate device "
                       "(account CITY), or an operator (account CORDON). The services read the verified identity "
                       "from the Nats-Request-Info header the server stamps on requests from CITY and refuse "
                       "the rest with `forbidden`; an unreadable identity is `unauthenticated`.",
    },
}
SECURITY = [{"$ref": "#/components/securitySchemes/natsUserCredentials"}]
SERVERS = {
    "nats": {
        "host": "localhost:4222",
        "protocol": "nats",
        "description": "Cordon's NATS (JetStream stream CORDON), in operator mode: every connection "
                       "presents user credentials; `cordon up` writes an operator's at <data>/auth/admin.creds",
        "security": SECURITY,
    },
}
COMMUNITY_PARAMETERS = {p: {"description": f"the community's {p} slug"} for p in ("district", "street", "committee")}


def who(service: str, name: str) -> str:
    """Who may send the command (shown in both API documents)."""
    if (service, name) in CORDON_ONLY:
        return "accepted only from inside Cordon (an operator's credentials)"
    return ("staff, officers given a community and gate devices send it on the scoped subject of their "
            "community; city systems granted cmd:%s.%s and operators on either" % (service, name))


def _system(channels: dict, operations: dict, messages: dict) -> None:
    """The operators' subjects under ``cordon.sys``: health fan-out and dead-letter replay."""
    status = {"type": "object", "required": ["ok", "service", "instance"], "properties": {
        "ok": {"type": "boolean", "description": "false while the instance has a problem or an error"},
        "service": {"type": "string"}, "instance": {"type": "string"},
        "outbox_depth": {"type": "integer"}, "committed": {"type": "integer"}, "published": {"type": "integer"},
        "relay_error": {"type": ["string", "null"]},
        "consumers": {"type": "object", "description": "per consumer: lag, applied, parked, last_error, standby"},
        "problems": {"type": "array", "items": {"type": "string"}},
        "error": {"type": "string", "description": "what fails (PostgreSQL away, ...)"}}}
    replay_reply = {"type": "object", "required": ["ok"], "properties": {
        "ok": {"type": "boolean"},
        "results": {"type": "array", "items": {"type": "object", "description":
                    "per id: id, consumer, event_id, type, outcome (replayed, already_applied, failed, not_found)"}},
        "error": {"$ref": REF.format(name="CommandRefused") + "/properties/error"}}}
    for key, address, request, reply, summary in (
        ("sys.health", HEALTH_FANOUT, {"type": "object", "description": "{}"}, status,
         "every running instance answers with its status (collect replies for a moment)"),
        ("sys.replay", "cordon.sys.{service}.replay",
         {"type": "object", "required": ["ids"], "properties": {"ids": {
             "type": "array", "items": {"type": "integer"}, "minItems": 1,
             "description": "dead letter ids (cordon dead-letters list), applied again in this order"}}},
         replay_reply, "one instance of the service applies its dead letters again (cordon dead-letters replay)"),
    ):
        messages[key] = {"name": key, "payload": request}
        messages[f"{key}.reply"] = {"name": f"{key}.reply", "payload": reply}
        channels[key] = {"address": address, "messages": {"request": {"$ref": f"#/components/messages/{key}"}}}
        if "{service}" in address:
            channels[key]["parameters"] = {"service": {"description": "a service that consumes events"}}
        channels[f"{key}.reply"] = {"address": None, "messages": {
            "reply": {"$ref": f"#/components/messages/{key}.reply"}}}
        operations[key] = {"action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                           "summary": f"operators: {summary} (NATS request/reply)",
                           "reply": {"channel": {"$ref": f"#/channels/{key}.reply"}}}


def document(commands: dict[str, dict[str, type]], version: str = "0.1.0",
             queries: dict[str, Query] | None = None) -> dict:
    """Build the document. ``commands`` maps service -> command name -> command struct;
    ``queries`` maps query name -> its :class:`~shared.contracts.queries.Query` (answered on
    cordon.qry.<name>, request and reply typed by its structs)."""
    events = sorted(((k, cls) for k, cls in env.registered_types().items()
                     if cls.__module__.startswith("shared.contracts.")),  # not test probes
                    key=lambda kv: (kv[1].service, kv[0]))
    types: list = [env.Envelope]
    for service in sorted(commands):
        types += [commands[service][name] for name in sorted(commands[service])]
    types += [cls for _, cls in events]
    for name in sorted(queries or {}):
        types += [queries[name].request, queries[name].reply]
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    schemas.update(reply_schemas())
    channels: dict = {}
    operations: dict = {}
    messages: dict = {}
    for service in sorted(commands):
        for name in sorted(commands[service]):
            cls = commands[service][name]
            key = f"{service}.{name}"
            messages[f"{key}.request"] = {"name": name, "payload": {"$ref": REF.format(name=cls.__name__)}}
            messages[f"{key}.reply"] = {"name": f"{name}.reply", "payload": {"oneOf": [
                {"$ref": REF.format(name="CommandAccepted")}, {"$ref": REF.format(name="CommandRefused")}]}}
            channels[key] = {
                "address": command_subject(service, name),
                "messages": {"request": {"$ref": f"#/components/messages/{key}.request"}},
            }
            # The same command scoped to a community: what the permissions of a community's
            # identities allow; every event it records must be in that community.
            channels[f"{key}.scoped"] = {
                "address": f"{COMMANDS_ROOT}.{service}.{name}.{{district}}.{{street}}.{{committee}}",
                "parameters": COMMUNITY_PARAMETERS,
                "messages": {"request": {"$ref": f"#/components/messages/{key}.request"}},
            }
            channels[f"{key}.reply"] = {
                "address": None,
                "messages": {"reply": {"$ref": f"#/components/messages/{key}.reply"}},
            }
            for suffix, how in (("", "unscoped"), (".scoped", "scoped to a community")):
                operations[key + suffix] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{key}{suffix}"},
                    "summary": f"{service} command {name}, {how} (NATS request/reply)",
                    "description": who(service, name),
                    "security": SECURITY,
                    "reply": {"channel": {"$ref": f"#/channels/{key}.reply"}},
                }
    for name, query in sorted((queries or {}).items()):
        key = f"query.{name}"
        messages[key] = {"name": name, "summary": query.summary,
                         "payload": {"$ref": REF.format(name=query.request.__name__)}}
        messages[f"{key}.reply"] = {"name": f"{name}.reply", "payload": {"oneOf": [
            {"$ref": REF.format(name=query.reply.__name__)}, {"$ref": REF.format(name="CommandRefused")}]}}
        channels[key] = {"address": query_subject(name),
                         "messages": {"request": {"$ref": f"#/components/messages/{key}"}}}
        channels[f"{key}.reply"] = {"address": None, "messages": {
            "reply": {"$ref": f"#/components/messages/{key}.reply"}}}
        answered = "every service's host" if query.service == "any" else query.service
        operations[key] = {"action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                           "summary": f"{answered} query {name} (NATS request/reply): {query.summary}",
                           "security": SECURITY,
                           "reply": {"channel": {"$ref": f"#/channels/{key}.reply"}}}
    _system(channels, operations, messages)
    for (type_name, schema_version), cls in events:
        key = f"{cls.service}.{type_name}.v{schema_version}"
        envelope_schema = {"allOf": [{"$ref": REF.format(name="Envelope")}, {"properties": {
            "type": {"const": type_name}, "schema": {"const": schema_version},
            "data": {"$ref": REF.format(name=cls.__name__)}}}]}
        messages[key] = {"name": type_name, "headers": {"type": "object", "properties": {
            "Nats-Msg-Id": {"type": "string", "description": "the event id"}}}, "payload": envelope_schema}
        channels[key] = {
            "address": f"cordon.evt.{{district}}.{{street}}.{{committee}}.{cls.service}.{type_name}",
            "parameters": COMMUNITY_PARAMETERS,
            "messages": {"event": {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"{key}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"{cls.service} records {type_name} on JetStream stream CORDON",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Cordon message API",
            "version": version,
            "description": "Commands on cordon.cmd.<service>.<command>, or scoped to a community on "
                           "cordon.cmd.<service>.<command>.<district>.<street>.<committee> (request/reply, "
                           "JSON); events on JetStream stream CORDON at cordon.evt.<district>.<street>."
                           "<committee>.<service>.<EventType>. Every connection authenticates (servers, "
                           "security); what an identity may not do is refused `forbidden`. Generated from "
                           "the code; see README.md.",
        },
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages, "securitySchemes": SECURITY_SCHEMES},
    }


def render(commands: dict[str, dict[str, type]], queries: dict[str, Query] | None = None) -> str:
    return json.dumps(document(commands, queries=queries), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
