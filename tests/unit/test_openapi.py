"""The committed OpenAPI document of the web gateway is what the code generates, is valid OpenAPI
3.1, and describes every command, every query (typed parameters, typed reply) and every status."""
import json

import pytest
from openapi_spec_validator import validate

from services.cli import SERVICES, load_spec, openapi_text
from services.web.statuses import GATEWAY_CODES, HTTP_STATUS
from shared import openapi
from shared.contracts.queries import QUERIES
from tests.support.documents import assert_refs_resolve


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(openapi_text())


def test_the_committed_openapi_document_matches_the_code():
    committed = openapi.PATH.read_text(encoding="utf-8")
    assert committed == openapi_text(), "stale: run `cordon openapi --write` and commit the result"
    assert openapi.render() == committed  # what GET /v1/openapi.json serves


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_command_of_every_service_is_a_post_of_its_struct(doc):
    for service in SERVICES:
        for name, cls in load_spec(service).command_types.items():
            post = doc["paths"][f"/v1/commands/{service}/{name}"]["post"]
            assert post["requestBody"]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{cls.__name__}"}
            assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/CommandAccepted")
            assert {"$ref": "#/components/parameters/IdempotencyKey"} in post["parameters"]
    assert doc["components"]["parameters"]["IdempotencyKey"]["in"] == "header"
    assert "command_id" in doc["components"]["schemas"]["RegisterArrival"]["required"]


def test_every_query_is_a_get_with_typed_parameters_and_a_typed_reply(doc):
    schemas = doc["components"]["schemas"]
    for view, query in QUERIES.items():
        get = doc["paths"][f"/v1/queries/{view}"]["get"]
        request = schemas[query.request.__name__]
        assert {p["name"] for p in get["parameters"]} == set(request.get("properties", {}))
        for param in get["parameters"]:
            assert param["in"] == "query" and ("type" in param["schema"] or "enum" in param["schema"]), param
            assert param["required"] == (param["name"] in request.get("required", ())), param
        reply = get["responses"]["200"]["content"]["application/json"]["schema"]
        assert reply == {"$ref": f"#/components/schemas/{query.reply.__name__}"}
        assert schemas[query.reply.__name__]["properties"], view  # an object with its fields, not `object`
    params = {p["name"]: p["schema"] for p in doc["paths"]["/v1/queries/community"]["get"]["parameters"]}
    assert params == {"community": {"type": "string"}, "on": {"type": "string", "format": "date"},
                      "at_least": {"type": "integer", "minimum": 0}}
    shifts = [p["name"] for p in doc["paths"]["/v1/queries/checkpoint.shifts"]["get"]["parameters"]]
    assert shifts == ["community", "on", "from", "to"]  # the wire's names, in the struct's order
    assert doc["paths"]["/v1/queries/health"]["get"]["parameters"] == []


def test_a_query_field_that_cannot_be_a_query_string_parameter_is_refused():
    with pytest.raises(ValueError, match="scalar"):
        openapi.parameters({"properties": {"ids": {"type": "array", "items": {"type": "integer"}}}})


def test_every_status_of_every_code_appears_with_the_refusal_body(doc):
    statuses = {status for path in doc["paths"].values() for op in path.values()
                for status, response in op["responses"].items()
                if response.get("content", {}).get("application/json", {}).get("schema", {}).get(
                    "$ref", "").endswith("/CommandRefused")}
    assert {str(s) for s in HTTP_STATUS.values()} <= statuses
    assert str(GATEWAY_CODES["unsupported_media_type"][0]) in statuses
    codes = doc["components"]["schemas"]["CommandRefused"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(HTTP_STATUS) | {"unsupported_media_type"} <= set(codes)


def test_the_gateways_own_paths_and_security_are_documented(doc):
    paths = doc["paths"]
    assert paths["/v1/tokens"]["post"]["security"] == []
    assert {"text/plain", "application/json"} <= set(paths["/v1/tokens"]["post"]["requestBody"]["content"])
    assert paths["/v1/tokens"]["post"]["responses"]["201"]["content"]["application/json"]["schema"][
        "$ref"].endswith("/TokenIssued")
    issued = doc["components"]["schemas"]["TokenIssued"]
    assert {"ok", "token", "identity", "expires_at"} == set(issued["required"])
    assert "delete" in paths["/v1/tokens/current"]
    assert "get" in paths["/v1/openapi.json"]
    feed = paths["/v1/feed"]["get"]
    assert "text/event-stream" in feed["responses"]["200"]["content"]
    assert {p["name"] for p in feed["parameters"]} == {"community", "durable", "since", "Last-Event-ID"}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert (schemes["cookie"]["type"], schemes["cookie"]["in"], schemes["cookie"]["name"]) == (
        "apiKey", "cookie", "cordon_session")
    assert doc["security"] == [{"bearer": []}, {"cookie": []}]


def test_every_reference_resolves(doc):
    assert_refs_resolve(doc)
