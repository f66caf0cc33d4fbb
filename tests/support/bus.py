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
from shared.bus import servers
from shared.config import Config
from shared.embedded import EmbeddedNats
from shared.embedded_cluster import EmbeddedNatsCluster

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


async def start_secure_cluster(folder: Path) -> EmbeddedNatsCluster:
    """A 3-node embedded cluster in operator mode (the authority in ``folder/auth``), started, and
    registered under its URL list and each node's URL."""
    cluster = EmbeddedNatsCluster(folder / "nodes", authority=Authority.open(folder / "auth"))
    try:
        await cluster.start()
    except BaseException:
        await cluster.stop()  # the nodes that did start
        raise
    for url in (cluster.urls, *(node.url for node in cluster.nodes)):
        remember(url, cluster.authority)
    return cluster


async def connect(url: str, **options) -> Client:
    """``nats.connect`` as the operator identity of the server at ``url`` (or a cluster's list)."""
    return await nats.connect(servers(url), user_credentials=creds_for(url), **options)


def operator_config(url: str, **settings) -> Config:
    """A host :class:`Config` on ``url`` with the operator's credentials (``nats_creds`` overrides)."""
    settings.setdefault("nats_creds", creds_for(url))
    return Config(nats_url=url, **settings)
