"""The web gateway's pure parts: the HTTP status of every error code, the paths no service could
answer, and the naming of a query-string field that does not fit its view's request."""
from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from services.web.gateway import check_command_path, query_invalid
from services.web.statuses import GATEWAY_CODES, HTTP_STATUS, status_of
from shared.errors import CODES, UnknownCommand
from shared.subjects import SERVICES


def test_every_stable_code_and_every_gateway_code_has_its_status():
    expected = {"invalid": 422, "unknown_command": 404, "not_found": 404, "conflict": 409, "rejected": 409,
                "too_large": 413, "unauthenticated": 401, "forbidden": 403, "unavailable": 503, "internal": 500}
    assert set(CODES) == set(expected)
    for code in CODES:
        assert status_of({"ok": False, "error": {"code": code, "message": "m"}}) == expected[code] == HTTP_STATUS[code]
    for code, (status, _) in GATEWAY_CODES.items():
        assert status_of({"ok": False, "error": {"code": code, "message": "m"}}) == status
    assert status_of({"ok": True, "events": []}) == 200
    assert status_of({"community": "x"}) == 200  # a query's reply carries no ok: an answer
    assert status_of({"ok": False, "services": {}}) == 200  # health with a service unwell: an answer
    # A refusal whose code no one knows, or that has none, is a bug somewhere: internal
    assert status_of({"ok": False, "error": {"code": "weather"}}) == 500
    assert status_of({"ok": False, "error": {}}) == 500


@pytest.mark.parametrize("service, command", [("weather", "forecast"), ("registry", "a b"), ("registry", "a..b"),
                                              ("registry", "*"), ("registry", ">"), ("registry", "fly.x"),
                                              ("registry", ""), ("Registry", "move_out")])
def test_a_path_no_service_could_answer_is_an_unknown_command(service, command):
    with pytest.raises(UnknownCommand):
        check_command_path(service, command)


def test_a_command_of_a_service_that_takes_commands_goes_on():
    for service in SERVICES:
        check_command_path(service, "fly")  # the service itself says it has no such command


class Cases(msgspec.Struct, forbid_unknown_fields=True):
    community: str
    limit: Annotated[int, msgspec.Meta(ge=1)] = 100


@pytest.mark.parametrize("params, field, says", [
    ({"community": "a.b.c", "limit": "abc"}, "limit", "limit='abc'"),
    ({"community": "a.b.c", "limit": "0"}, "limit", ">= 1"),
    ({"limit": "5"}, "community", "community is required in query cases"),
    ({"community": "a.b.c", "colour": "red"}, "colour", "unknown field 'colour'"),
])
def test_a_query_string_that_does_not_fit_names_its_field(params, field, says):
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(params, Cases, strict=False)
    error = query_invalid("cases", params, str(caught.value))
    assert error.code == "invalid" and error.field == field and says in error.message, error.to_reply()


def test_the_idempotency_key_is_the_command_id_within_a_command_ids_limit():
    from services.web.gateway import command_body
    from services.web.sessions import Session
    from shared.errors import Invalid
    from shared.identity import Identity

    staff = Session(token="t", identity=Identity(name="li-wei", role="staff", scope="a.b.c"), nc=None,
                    expires_at=0, over=None)
    cmd, community = command_body(staff, b'{"compound": "c-1"}', "k" * 128)
    assert (cmd["command_id"], cmd["actor"], community) == ("k" * 128, "staff:li-wei", "a.b.c")
    for key in ("k" * 129, " "):  # longer than a command_id may be, or blank: refused before it is sent
        with pytest.raises(Invalid) as refused:
            command_body(staff, b"{}", key)
        assert refused.value.field == "command_id"
    with pytest.raises(Invalid):  # the body's own id and the header differ
        command_body(staff, b'{"command_id": "a"}', "b")
