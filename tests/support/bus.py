"""How a test reaches NATS: every server a test starts runs in operator mode with an
:class:`~shared.auth.Authority` of its own, and a test connects as that authority's operator
identity (``admin.creds``), or as a service's own identity.

The servers are known by URL: ``secure_nats`` (and the ``nats_server`` fixture, which uses it)
registers each one, so helpers given only a URL find its credentials (:func:`creds_for`).
"""
from __future__ import annotations

from pathlib import Path

import nats
from nats.aio.client import Client

from shared.auth import Authority
from shared.config import Config
from shared.embedded import EmbeddedNats

_AUTHORITIES: dict[str, Authority] = {}


def remember(url: str, authority: Authority) -> None:
    """Credentials for ``url`` come from ``authority`` from now on (a proxy's URL too)."""
    _AUTHORITIES[url] = authority


def authority_for(url: str) -> Authority:
    try:
        return _AUTHORITIES[url]
    except KeyError:
        raise AssertionError(f"no authority known for {url}: start it with tests.support.bus.secure_nats "
                             "(or remember() a proxy's URL)") from None


def creds_for(url: str) -> str:
    """The operator credentials (``admin.creds``) of the server at ``url``."""
    return str(authority_for(url).admin_creds())


def service_creds(url: str, service: str) -> str:
    """The service's own credentials on the server at ``url``."""
    return str(authority_for(url).service_creds(service))


async def start_secure_nats(folder: Path, port: int | None = None) -> EmbeddedNats:
    """An embedded nats-server in operator mode: the authority in ``folder/auth``, the server's
    data in ``folder/nats``; started and registered under its URL."""
    server = EmbeddedNats(folder / "nats", port=port, authority=Authority.open(folder / "auth"))
    await server.start()
    remember(server.url, server.authority)
    return server


async def connect(url: str, **options) -> Client:
    """``nats.connect`` as the operator identity of the server at ``url``."""
    return await nats.connect(url, user_credentials=creds_for(url), **options)


def operator_config(url: str, **settings) -> Config:
    """A host :class:`Config` on ``url`` with the operator's credentials (``nats_creds`` overrides)."""
    settings.setdefault("nats_creds", creds_for(url))
    return Config(nats_url=url, **settings)
