"""The committed AsyncAPI document is what the code generates: integrators never read stale docs."""
import json

from services.cli import SERVICES, asyncapi_text, load_spec
from shared import asyncapi
from shared.contracts.queries import QUERIES
from tests.support.documents import assert_refs_resolve


def test_the_committed_asyncapi_document_matches_the_code():
    committed = asyncapi.PATH.read_text(encoding="utf-8")
    assert committed == asyncapi_text(), "stale: run `cordon asyncapi --write` and commit the result"


def test_every_command_and_event_of_every_service_is_documented():
    doc = json.loads(asyncapi_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "cordon.cmd.registry.verify_arrival" in addresses
    assert "cordon.evt.{district}.{street}.{committee}.registry.ArrivalVerified" in addresses
    for name in SERVICES:
        if not load_spec(name).commands:
            continue  # views and audit answer queries only
        assert any(a and a.startswith(f"cordon.cmd.{name}.") for a in addresses)
    schema = doc["components"]["schemas"]["RegisterArrival"]
    assert "visited" in schema["properties"] and "command_id" in schema["required"]


def test_every_query_is_documented():
    doc = json.loads(asyncapi_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    for query in ("community", "rollup", "timeline", "audit", "checkpoint.shifts", "quarantine.cases",
                  "logistics.requests"):
        assert f"cordon.qry.{query}" in addresses


def test_every_query_has_its_typed_request_and_reply():
    doc = json.loads(asyncapi_text())
    messages, schemas = doc["components"]["messages"], doc["components"]["schemas"]
    for name, query in QUERIES.items():
        assert messages[f"query.{name}"]["payload"] == {"$ref": f"#/components/schemas/{query.request.__name__}"}
        answer, refused = messages[f"query.{name}.reply"]["payload"]["oneOf"]
        assert answer == {"$ref": f"#/components/schemas/{query.reply.__name__}"}
        assert refused["$ref"].endswith("/CommandRefused")
        assert schemas[query.reply.__name__]["properties"]["ok"]  # the reply's own fields, not `object`
    board = schemas["CommunityQuery"]["properties"]
    assert "at_least" in board and "at_least" not in schemas["CommunityQuery"]["required"]
    assert {"position", "behind"} <= set(schemas["CommunityReply"]["required"])


def test_the_operators_subjects_are_documented_and_every_reference_resolves():
    doc = json.loads(asyncapi_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"cordon.sys.health", "cordon.sys.{service}.replay"} <= addresses
    assert_refs_resolve(doc)


def test_commands_scoped_to_a_community_servers_and_security_are_documented():
    doc = json.loads(asyncapi_text())
    channels = {c["address"]: c for c in doc["channels"].values()}
    scoped = channels["cordon.cmd.quarantine.release_case.{district}.{street}.{committee}"]
    assert set(scoped["parameters"]) == {"district", "street", "committee"}
    assert "cordon.cmd.registry.grant_identity" in channels
    assert "cordon.qry.registry.identities" in channels
    assert {"IdentityGranted", "IdentityRevoked"} <= set(doc["components"]["schemas"])
    [server] = doc["servers"].values()
    assert server["protocol"] == "nats" and server["security"]
    scheme = doc["components"]["securitySchemes"]["natsUserCredentials"]
    assert "JWT" in scheme["description"]
    codes = doc["components"]["schemas"]["CommandRefused"]["properties"]["error"]["properties"]["code"]["enum"]
    assert {"forbidden", "unauthenticated"} <= set(codes)
    grant = next(o for o in doc["operations"].values()
                 if o["channel"]["$ref"] == "#/channels/registry.grant_identity")
    assert "inside Cordon" in grant["description"] and grant["security"]


def test_the_pass_events_are_documented_in_both_schemas_and_only_schema_1_has_a_number():
    doc = json.loads(asyncapi_text())
    messages, schemas = doc["components"]["messages"], doc["components"]["schemas"]
    for name in ("PassIssued", "PassRevoked", "PassageAllowed", "PassageDenied"):
        old, new = (messages[f"checkpoint.{name}.v{v}"]["payload"]["allOf"][1]["properties"] for v in (1, 2))
        assert (old["type"]["const"], old["schema"]["const"], new["type"]["const"], new["schema"]["const"]) == (
            name, 1, name, 2)
        assert "number" in schemas[old["data"]["$ref"].rsplit("/", 1)[1]]["properties"]
        assert "number" not in schemas[new["data"]["$ref"].rsplit("/", 1)[1]]["properties"]
        channels = {doc["channels"][f"checkpoint.{name}.v{v}"]["address"] for v in (1, 2)}
        assert channels == {f"cordon.evt.{{district}}.{{street}}.{{committee}}.checkpoint.{name}"}  # one subject
