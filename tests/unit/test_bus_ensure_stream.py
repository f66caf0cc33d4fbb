"""A service that starts while its JetStream cluster is still forming waits for it: the stream's
creation refused with "no suitable peers" is tried again, not taken for "somebody else made it"."""
from __future__ import annotations

import pytest
from nats.js.errors import APIError, NotFoundError

from shared import bus


class FormingCluster:
    """A JetStream API whose stream does not exist and whose first ``refusals`` creations are
    refused because too few nodes are there yet to place the replicas."""

    def __init__(self, refusals: int, code: int = 10005):
        self.refusals, self.code = refusals, code
        self.created = None
        self.adds = 0

    async def stream_info(self, name):
        if self.created is None:
            raise NotFoundError(code=404, err_code=10059, description="stream not found")
        return self.created

    async def add_stream(self, config):
        self.adds += 1
        if self.adds <= self.refusals:
            raise APIError(code=500, err_code=self.code, description="no suitable peers for placement, peer offline")
        self.created = config
        return config


async def test_a_stream_refused_for_want_of_peers_is_created_once_they_are_there():
    cluster = FormingCluster(refusals=2)

    await bus.ensure_stream(cluster, replicas=3, patience=10)

    assert cluster.adds == 3
    assert cluster.created.num_replicas == 3


async def test_another_refusal_is_not_waited_for():
    cluster = FormingCluster(refusals=1, code=10052)  # e.g. a bad configuration: no use waiting

    with pytest.raises(NotFoundError):  # looked up after the refusal, as before: not there
        await bus.ensure_stream(cluster, replicas=3, patience=10)
    assert cluster.adds == 1
