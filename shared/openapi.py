"""The OpenAPI 3.1 document of the web gateway's HTTP API (``cordon web``), generated from the code.

Every command of every service is its own path, ``POST /v1/commands/{service}/{command}``, whose
body is the command's struct (the same structs as the AsyncAPI document's); every query is
``GET /v1/queries/{view}`` with one query-string parameter per field of its request struct and its
reply struct (:data:`shared.contracts.queries.QUERIES`); refusals are ``CommandRefused`` under the
HTTP status of their code (``services/web/statuses.py``). Committed at
``shared/contracts/openapi.json``; a test fails when it differs from what the code generates.
Regenerate with ``cordon openapi --write``.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from shared import asyncapi
from shared.contracts.queries import QUERIES, Query
from shared.envelope import Envelope
from shared.errors import CODES

PATH = Path(__file__).parent / "contracts" / "openapi.json"
REF = "#/components/schemas/{name}"
JSON = "application/json"


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A login with an identity's credentials, as JSON (or the file itself as text/plain)."""

    creds: Annotated[str, msgspec.Meta(description="the text of the identity's .creds file")]


class TokenIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """Who the session acts as (shared.identity.Identity)."""

    name: str
    role: Annotated[str, msgspec.Meta(description="staff, officer, city-system, gate or operator")]
    scope: Annotated[str, msgspec.Meta(description="what it reads: city, a district, district.street or a "
                                                   "community")]
    community: Annotated[str | None, msgspec.Meta(description="where it acts (staff, gate, an officer given one)")]
    compound: Annotated[str | None, msgspec.Meta(description="a gate device's compound")]
    grants: Annotated[list[str], msgspec.Meta(description="a city system's grants (cmd:..., qry:..., evt)")]


class TokenIssued(msgspec.Struct, frozen=True, kw_only=True):
    """A session: send the token as ``Authorization: Bearer <token>`` (or the cookie cordon_session)."""

    ok: Literal[True]
    token: str
    identity: TokenIdentity
    expires_at: datetime


class Done(msgspec.Struct, frozen=True, kw_only=True):
    """Done; nothing more to say."""

    ok: Literal[True]


#: The statuses a query can be refused with (a query has no command, no state to conflict with).
QUERY_CODES = ("invalid", "not_found", "unauthenticated", "forbidden", "unavailable", "internal")
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "a token from POST /v1/tokens (opaque, 12 h; ends with DELETE /v1/tokens/current "
                              "or when the identity is revoked)"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "cordon_session",
               "description": "the browser login's session (POST /login): the same token"},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128},
    "description": "the command_id: the same key again returns the reply of the accepted command and writes "
                   "nothing. With command_id in the body as well, they must be equal (else 422 invalid, "
                   "field command_id)",
}


def document(commands: dict[str, dict[str, type]] | None = None,
             http_status: dict[str, int] | None = None,
             gateway_codes: dict[str, tuple[int, str]] | None = None,
             version: str = "0.1.0") -> dict:
    """The document. ``commands`` maps service -> command name -> command struct, ``http_status``
    error code -> HTTP status, ``gateway_codes`` the gateway's own codes -> (status, meaning); each
    defaults to what the services and the gateway have (looked up only then: shared/ does not
    otherwise import services/)."""
    if commands is None:
        from services.cli import command_types

        commands = command_types()
    if http_status is None or gateway_codes is None:
        from services.web import statuses

        http_status = statuses.HTTP_STATUS if http_status is None else http_status
        gateway_codes = statuses.GATEWAY_CODES if gateway_codes is None else gateway_codes
    codes = {**CODES, **{code: meaning for code, (_, meaning) in gateway_codes.items()}}
    statuses_of = {**http_status, **{code: status for code, (status, _) in gateway_codes.items()}}
    schemas = _schemas(commands, codes)
    paths: dict = {}
    for service in sorted(commands):
        for name in sorted(commands[service]):
            paths[f"/v1/commands/{service}/{name}"] = {"post": _command(service, name, commands[service][name],
                                                                        statuses_of, codes)}
    for view, query in sorted(QUERIES.items()):
        paths[f"/v1/queries/{view}"] = {"get": _query(query, schemas, statuses_of, codes)}
    paths.update(_gateway_paths(statuses_of, codes))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Cordon web gateway",
            "version": version,
            "description": "The message API over HTTP (cordon web): a command's JSON body exactly as on NATS "
                           "(cordon.cmd.<service>.<command>), answered with the NATS reply body under the HTTP "
                           "status of its code; a query's fields as query-string parameters "
                           "(cordon.qry.<view>); the community's events as server-sent events. Every call acts as "
                           "the identity whose credentials opened the session (POST /v1/tokens), so the bus's "
                           "permissions and the services' checks decide what it may do. Generated from the "
                           "code; see README.md.",
        },
        "servers": [{"url": "/", "description": "the gateway, where cordon web listens"}],
        "security": [{"bearer": []}, {"cookie": []}],
        "tags": [{"name": s, "description": f"the {s} service"} for s in sorted(commands)]
        + [{"name": "queries", "description": "the views of every service"},
           {"name": "gateway", "description": "sessions, the event feed and this document"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": SECURITY_SCHEMES,
            "parameters": {"IdempotencyKey": IDEMPOTENCY_KEY},
        },
    }


def render(commands: dict[str, dict[str, type]] | None = None) -> str:
    """The document as committed (sorted keys). Without ``commands``, the document of this code,
    built once per process (about 0.2 s: GET /v1/openapi.json serves it)."""
    if commands is None:
        return _rendered()
    return json.dumps(document(commands), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


@functools.cache
def _rendered() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def _schemas(commands: dict[str, dict[str, type]], codes: dict[str, str]) -> dict:
    types: list = [Envelope, TokenRequest, TokenIssued, Done]
    for service in sorted(commands):
        types += [commands[service][name] for name in sorted(commands[service])]
    for view in sorted(QUERIES):
        types += [QUERIES[view].request, QUERIES[view].reply]
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    schemas.update(asyncapi.reply_schemas(codes))
    return schemas


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def _refusals(statuses_of: dict[str, int], codes: dict[str, str], which) -> dict:
    """One response per HTTP status among the codes ``which``, each a CommandRefused."""
    by_status: dict[int, list[str]] = {}
    for code in which:
        by_status.setdefault(statuses_of[code], []).append(code)
    return {str(status): {
        "description": "; ".join(f"{code}: {codes[code]}" for code in sorted(names)),
        "content": {JSON: {"schema": _ref("CommandRefused")}},
    } for status, names in sorted(by_status.items())}


def _command(service: str, name: str, cls: type, statuses_of: dict[str, int], codes: dict[str, str]) -> dict:
    service_codes = [c for c in statuses_of if c not in ("unknown_path", "method_not_allowed")]
    return {
        "operationId": f"{service}.{name}",
        "tags": [service],
        "summary": f"{service} command {name}",
        "description": f"Sent as cordon.cmd.{service}.{name}: on the subject scoped to the community (the "
                       "body's community, else the identity's) for staff, officers and gate devices, unscoped "
                       f"for city systems. Who may send it: {asyncapi.who(service, name)}. actor defaults to "
                       "the identity's own; command_id may come as the Idempotency-Key header.",
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(cls.__name__)}}},
        "responses": {
            "200": {"description": "accepted (sent again with the same command_id: the same reply, nothing "
                                   "written)", "content": {JSON: {"schema": _ref("CommandAccepted")}}},
            **_refusals(statuses_of, codes, service_codes),
        },
    }


def _query(query: Query, schemas: dict, statuses_of: dict[str, int], codes: dict[str, str]) -> dict:
    return {
        "operationId": f"query.{query.name}",
        "tags": ["queries"],
        "summary": query.summary,
        "description": f"Sent as cordon.qry.{query.name} (answered by "
                       + ("every service" if query.service == "any" else f"the {query.service} service")
                       + "); the parameters are converted to its request (\"200\" -> 200) and sent as JSON.",
        "parameters": parameters(schemas[query.request.__name__]),
        "responses": {
            "200": {"description": "the view's answer", "content": {JSON: {"schema": _ref(query.reply.__name__)}}},
            **_refusals(statuses_of, codes, QUERY_CODES),
        },
    }


def parameters(schema: dict) -> list[dict]:
    """One ``in: query`` parameter per property of a request's JSON schema, typed by it (an
    optional field's ``null`` dropped: a parameter left out is the field's default)."""
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        typed = _not_null(prop)
        description = typed.pop("description", None)
        if typed.get("default", ...) is None:
            del typed["default"]
        if "$ref" in typed or typed.get("type") in ("object", "array"):
            raise ValueError(f"{name}: a query-string parameter must be a scalar, not {typed}")
        param = {"name": name, "in": "query", "required": name in required, "schema": typed}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _not_null(prop: dict) -> dict:
    """``prop`` without its ``null`` alternative, the outer keywords (description, default) kept."""
    branches = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" not in prop or len(branches) != 1:
        return dict(prop)
    outer = {k: v for k, v in prop.items() if k != "anyOf"}
    return {**branches[0], **outer}


def _gateway_paths(statuses_of: dict[str, int], codes: dict[str, str]) -> dict:
    refused = _refusals
    public: list = []  # no session needed
    return {
        "/v1/tokens": {"post": {
            "operationId": "tokens.create", "tags": ["gateway"], "security": public,
            "summary": "open a session with an identity's credentials",
            "description": "The gateway connects to NATS with the credentials (the server verifies them: a "
                           "revoked or foreign key fails) and keeps the connection for the session.",
            "requestBody": {"required": True, "content": {
                "text/plain": {"schema": {"type": "string", "description": "the identity's .creds file"}},
                "application/octet-stream": {"schema": {"type": "string", "description": "the .creds file"}},
                JSON: {"schema": _ref("TokenRequest")}}},
            "responses": {"201": {"description": "the session", "content": {JSON: {"schema": _ref("TokenIssued")}}},
                          **refused(statuses_of, codes, ("unauthenticated", "invalid", "too_large", "timeout",
                                                         "unsupported_media_type", "unavailable"))},
        }},
        "/v1/tokens/current": {"delete": {
            "operationId": "tokens.delete", "tags": ["gateway"], "summary": "end this session",
            "responses": {"200": {"description": "ended (the cookie cordon_session cleared)",
                                  "content": {JSON: {"schema": _ref("Done")}}},
                          **refused(statuses_of, codes, ("unauthenticated",))},
        }},
        "/v1/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["gateway"], "security": public, "summary": "this document",
            "responses": {"200": {"description": "the OpenAPI 3.1 document, generated from the code",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        }},
        "/v1/feed": {"get": {
            "operationId": "feed", "tags": ["gateway"],
            "summary": "a community's events as server-sent events (what cordon feed reads)",
            "parameters": [
                {"name": "community", "in": "query", "required": True, "schema": {"type": "string"},
                 "description": "the path to follow, one the identity reads and its credentials may subscribe "
                                "to: a community (district.street.committee); an officer's street or district"},
                {"name": "durable", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$", "default": "default"},
                 "description": "the device's feed: reading again under the same name goes on where it "
                                "stopped (one community per name)"},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "where a new feed starts: a day (YYYY-MM-DD, from midnight in the city's "
                                "time zone) or an RFC 3339 time with its offset; default: from now on. "
                                "Ignored once the feed exists"},
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "integer", "minimum": 0},
                 "description": "the stream sequence of the last event the client handled: the stream "
                                "starts right after it (events sent but not handled come again)"},
            ],
            "responses": {"200": {"description": "one server-sent event per event: `id` its stream sequence, "
                                                 "`event` its type, `data` the envelope "
                                                 "(components/schemas/Envelope); a comment every 15 s when idle",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **refused(statuses_of, codes, ("invalid", "unauthenticated", "forbidden", "conflict",
                                                         "unavailable"))},
        }},
        "/healthz": {"get": {"operationId": "healthz", "tags": ["gateway"], "security": public,
                             "summary": "the gateway is alive",
                             "responses": {"200": {"description": "alive", "content": {JSON: {"schema": {
                                 "type": "object", "properties": {"ok": {"const": True}}}}}}}}},
        "/readyz": {"get": {"operationId": "readyz", "tags": ["gateway"], "security": public,
                            "summary": "the gateway is connected to NATS",
                            "responses": {status: {"description": what, "content": {JSON: {"schema": {
                                "type": "object", "properties": {
                                    "ok": {"type": "boolean"}, "nats": {"enum": ["connected", "not connected"]},
                                    "sessions": {"type": "integer", "description": "sessions held"}}}}}}
                                for status, what in (("200", "ready"), ("503", "not connected to NATS"))}}},
    }
