"""Serving the gateway: uvicorn (with httptools), in this process's event loop."""
from __future__ import annotations

import argparse

import uvicorn

from services.web.app import create
from services.web.config import Config
from shared.config import Config as Shared


def add_commands(sub: argparse._SubParsersAction) -> None:
    web = sub.add_parser("web", help="the HTTP gateway: the API for city systems, the committee's live board")
    web.add_argument("--host", default=None, help="address to listen on (CORDON_WEB_HOST, default 127.0.0.1)")
    web.add_argument("--port", type=int, default=None, help="port (CORDON_WEB_PORT, default 8080)")
    web.set_defaults(run=run)


def run(args: argparse.Namespace, shared: Shared) -> int:
    config = Config.from_env(shared, host=args.host, port=args.port)
    serve(config)
    return 0


def serve(config: Config) -> None:
    uvicorn.Server(server_config(config)).run()


def server_config(config: Config) -> uvicorn.Config:
    """uvicorn's settings: httptools, no access log (structlog logs what matters), a bounded
    keep-alive and header size so that idle or slow clients cannot hold the gateway."""
    return uvicorn.Config(create(config), host=config.host, port=config.port, http="httptools",
                          loop="asyncio", lifespan="on", access_log=False, log_level="warning",
                          timeout_keep_alive=30, h11_max_incomplete_event_size=16 * 1024,
                          timeout_graceful_shutdown=5, server_header=False)
