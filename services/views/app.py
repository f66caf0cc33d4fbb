"""The views' composition root: read models of the whole stream, answered on ``cordon.qry.*``.

No commands: the views only consume. The live projector is a follower of the stream (the host
runs it) writing into the current generation (see :mod:`shared.tail`); it reports in the host's
status like a consumer (lag = stream sequences behind the head), so ``cordon.qry.health`` shows it.
"""
from __future__ import annotations

from functools import partial
from datetime import tzinfo

from services.views import queries, schema
from services.views.project import Projection
from shared.config import city_zone
from shared.tail import Tail, TailFollower
from shared.service import ServiceSpec


class LiveViews(TailFollower):
    """The views' follower of the stream: the live projector."""

    name = "views"

    def __init__(self, host, zone: tzinfo, batch_max: int = 2000):
        self.pool = host.pool
        self.projection = Projection(host.pool, zone)
        self.tail = Tail(host.nc, name="views", position=self.projection.position,
                         prepare=self.projection.prepare, apply=self.projection.apply,
                         rewind=self.projection.rewind, batch_max=batch_max)

    @property
    def applied(self) -> int:
        return self.projection.applied

    @property
    def parked(self) -> int:
        return self.projection.undecodable

    async def run(self) -> None:
        async with self.pool.acquire() as conn:
            await schema.migrate(conn)
        await self.tail.run()


def spec() -> ServiceSpec:
    zone = city_zone()
    return ServiceSpec(
        name="views",
        extra_ddl=schema.POINTER_DDL,
        queries={
            "community": partial(queries.community, zone=zone),
            "rollup": partial(queries.rollup, zone=zone),
            "timeline": queries.timeline,
        },
        followers=[partial(LiveViews, zone=zone)],
    )
