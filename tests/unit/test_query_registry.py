"""The queries' contract (shared.contracts.queries) is the one source: every query a service
answers is in it, under that service, and its request decodes as the handlers and the gateway
need (strict on the bus, from query-string text through the gateway). What each live reply holds is
checked against the services in tests/integration/test_query_contracts.py (this file: the registry itself)."""
from datetime import date

import msgspec
import pytest

from services.cli import SERVICES, load_spec
from shared.contracts import queries
from shared.contracts.queries import QUERIES
from shared.errors import Invalid
from shared.identity import ROLES

C = "changning.chengjiaqiao.nangong"


def test_every_query_a_service_answers_is_in_the_contract_under_that_service():
    answered = {view: name for name in SERVICES for view in load_spec(name).queries}
    assert {view: q.service for view, q in QUERIES.items() if q.service != "any"} == answered
    assert {view for view, q in QUERIES.items() if q.service == "any"} == {"health"}  # the host's own


def test_every_query_has_a_summary_and_strict_structs():
    for view, query in QUERIES.items():
        assert query.name == view and query.summary
        for cls in (query.request, query.reply):
            assert cls.__struct_config__.forbid_unknown_fields and cls.__struct_config__.frozen, cls


def test_the_roles_an_identity_row_may_hold_are_the_roles():
    role = next(f for f in msgspec.inspect.type_info(queries.IdentityRow).fields if f.name == "role")
    assert set(role.type.values) == set(ROLES)


def test_the_gateways_query_string_text_converts_to_the_typed_request():
    # GET /v1/queries/community?community=...&on=2020-02-17&at_least=200
    params = {"community": C, "on": "2020-02-17", "at_least": "200"}
    assert msgspec.convert(params, queries.CommunityQuery, strict=False) == queries.CommunityQuery(
        community=C, on=date(2020, 2, 17), at_least=200)
    shifts = msgspec.convert({"community": C, "from": "2020-02-01", "to": "2020-02-17"}, queries.ShiftsQuery,
                             strict=False)
    assert (shifts.from_, shifts.to) == (date(2020, 2, 1), date(2020, 2, 17))
    rollup = msgspec.convert({"scope": "city", "detail": "true"}, queries.RollupQuery, strict=False)
    assert rollup.detail is True


@pytest.mark.parametrize("view, payload, field", [
    ("community", b'{"community": "%s", "at_least": -1}' % C.encode(), "at_least"),
    ("community", b'{"community": "%s", "at_least": "5"}' % C.encode(), "at_least"),  # strict on the bus
    ("quarantine.cases", b'{"community": "%s", "status": "gone"}' % C.encode(), "status"),
    ("logistics.requests", b'{"community": "%s", "limit": 1001}' % C.encode(), "limit"),
    ("registry.identities", b'{"name": "li-wei"}', "name"),
    ("health", b'{"verbose": true}', "verbose"),
    ("timeline", b'{}', "resident"),
])
def test_a_bad_request_is_invalid_naming_the_field(view, payload, field):
    with pytest.raises(Invalid) as err:
        queries.decode(view, payload)
    assert err.value.field == field, err.value.message


def test_an_invalid_choice_says_the_choices():
    with pytest.raises(Invalid, match="expected one of: all, closed, open"):
        queries.decode("quarantine.cases", b'{"community": "%s", "status": "gone"}' % C.encode())


def test_an_empty_payload_is_no_fields_only_for_a_query_that_takes_none():
    assert queries.decode("health", b"") == queries.HealthQuery()
    assert queries.decode("registry.identities", b" ") == queries.IdentitiesQuery()
    with pytest.raises(Invalid, match="empty payload"):
        queries.decode("audit", b"")
