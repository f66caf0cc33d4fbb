"""The gateway's settings: ``from_env`` is the only place that reads them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import tzinfo

from shared.config import Config as Shared, city_zone


@dataclass(frozen=True, kw_only=True)
class Config:
    shared: Shared
    host: str = "127.0.0.1"
    port: int = 8080
    #: How long a token lives, seconds.
    token_ttl_s: float = 12 * 3600
    #: How long the gateway waits for a service's reply, seconds.
    reply_timeout_s: float = 5.0
    #: How long a client may take to send its body, seconds (a slow client is cut off with 408).
    body_timeout_s: float = 10.0
    #: A feed with nothing to send writes a comment this often, seconds (proxies close idle streams).
    feed_keepalive_s: float = 15.0
    #: The city's day (``CORDON_TIMEZONE``): what "today" means on the board.
    zone: tzinfo = field(default_factory=city_zone)
    #: A live page is refreshed at most this often, seconds (events in between are coalesced).
    refresh_s: float = 0.15
    #: A comment on every idle live stream this often, seconds (proxies close silent connections).
    keepalive_s: float = 15.0

    @property
    def max_body(self) -> int:
        return self.shared.max_payload

    @classmethod
    def from_env(cls, shared: Shared, env: dict[str, str] | None = None, **overrides) -> "Config":
        env = dict(os.environ if env is None else env)
        values: dict = {}
        for key, name, conv in (("host", "CORDON_WEB_HOST", str), ("port", "CORDON_WEB_PORT", int),
                                ("token_ttl_s", "CORDON_WEB_TOKEN_TTL_S", float),
                                ("reply_timeout_s", "CORDON_WEB_REPLY_TIMEOUT_S", float),
                                ("body_timeout_s", "CORDON_WEB_BODY_TIMEOUT_S", float)):
            if env.get(name):
                try:
                    values[key] = conv(env[name])
                except ValueError:
                    raise SystemExit(f"{name}={env[name]!r} is not a {conv.__name__}") from None
        values["zone"] = city_zone(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(shared=shared, **values)
