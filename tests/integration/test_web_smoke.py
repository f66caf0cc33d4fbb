"""The gateway's first story: staff log in with their creds and register a compound over HTTP."""
from __future__ import annotations

import httpx
import pytest

from services.registry.app import spec as registry_spec
from shared.identity import Identity
from tests.support.cordon import running
from tests.support.identities import NANGONG
from tests.support.web import creds, gateway, login

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)


async def test_staff_register_a_compound_over_http(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), gateway(nats_url) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            headers = await login(http, creds(nats_url, LI_WEI)[1])
            reply = await http.post("/v1/commands/registry/register_compound", headers={
                **headers, "idempotency-key": "c-1"}, json={
                "community": NANGONG, "compound": "nangong-1", "name": "南宫小区", "buildings": ["b1"],
                "gates": ["g1"]})
            assert reply.status_code == 200, reply.text
            assert reply.json()["events"][0]["actor"] == "staff:li-wei"
            again = await http.post("/v1/commands/registry/register_compound", headers={
                **headers, "idempotency-key": "c-1"}, json={
                "community": NANGONG, "compound": "nangong-1", "name": "南宫小区", "buildings": ["b1"],
                "gates": ["g1"]})
            assert again.json() == reply.json()
            nobody = await http.post("/v1/commands/registry/register_compound", json={})
            assert nobody.status_code == 401, nobody.text
