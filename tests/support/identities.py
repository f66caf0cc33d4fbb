"""Callers from the city's account, for tests of the services' own checks (no tests here).

On a secured Cordon, nats-server stamps every request that crosses from the ``CITY`` account into
``CORDON`` with ``Nats-Request-Info``: the caller's verified JWT name (``name_tag``) and tags.
These tests connect from inside ``CORDON`` (as an operator: its requests cross no import), where a
client may set that header itself, exactly as the server would set it; so every service-side rule
is tested here, with real services. That NATS itself refuses what a user's permissions do not
allow (and overwrites a forged header) is tested with real credentials minted by the authority
(tests/integration/test_identities_on_the_bus.py).
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid

from shared.identity import Identity
from shared.subjects import command_subject, query_subject

NANGONG = "changning.chengjiaqiao.nangong"
BEIXIN = "changning.chengjiaqiao.beixin"
#: A community of the next street.
JINXIU = "changning.xinjing.jinxiu"


def user_key(n: int) -> str:
    """A NATS user public key as nkeys encodes it (prefix byte, 32 key bytes, CRC-16 little-endian)."""
    body = bytes([20 << 3]) + n.to_bytes(32, "big")
    raw = body + binascii.crc_hqx(body, 0).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def request_info(identity: Identity) -> dict[str, str]:
    """The header the server stamps on a request of ``identity`` from the CITY account."""
    return {"Nats-Request-Info": json.dumps({
        "acc": "ACITYACCOUNTPUBLICKEY", "user": f"U{identity.name.upper()}", "name": "whatever-the-client-says",
        "name_tag": identity.name, "tags": identity.tags(), "kind": "Client", "client_type": "nats"})}


class As:
    """Requests sent as one identity (``identity`` None: from inside CORDON, no header)."""

    def __init__(self, nc, identity: Identity | None, headers: dict[str, str] | None = None):
        self.nc = nc
        self.identity = identity
        self.headers = headers if headers is not None else (request_info(identity) if identity else None)

    @property
    def actor(self) -> str:
        return self.identity.actor if self.identity else "operator:admin"

    async def command(self, service: str, command: str, community: str | None = None, /, **fields) -> dict:
        """Send a command, on the scoped subject of ``community`` when given."""
        fields.setdefault("command_id", f"cmd-{uuid.uuid4()}")
        fields.setdefault("actor", self.actor)
        msg = await self.nc.request(command_subject(service, command, community),
                                    json.dumps(fields, ensure_ascii=False).encode(), timeout=10,
                                    headers=self.headers)
        return json.loads(msg.data)

    async def ok(self, service: str, command: str, community: str | None = None, /, **fields) -> dict:
        reply = await self.command(service, command, community, **fields)
        assert reply["ok"], reply
        return reply

    async def query(self, view: str, /, **fields) -> dict:
        msg = await self.nc.request(query_subject(view), json.dumps(fields).encode(), timeout=10,
                                    headers=self.headers)
        return json.loads(msg.data)


def forbidden(reply: dict, *says: str) -> dict:
    """The reply is ``forbidden`` and its message says each of ``says``; the error returned."""
    assert not reply["ok"] and reply["error"]["code"] == "forbidden", reply
    for text in says:
        assert text in reply["error"]["message"], reply
    return reply["error"]
