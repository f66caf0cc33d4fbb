"""Run the checkpoint service alone: ``python -m services.checkpoint`` (CORDON_NATS_URL, CORDON_PG_DSN).

``cordon service checkpoint`` does the same once the service is listed in ``services/cli.py``.
"""
from __future__ import annotations

import asyncio
import signal

from services.checkpoint.app import spec
from shared import log as logging
from shared.config import Config
from shared.service import ServiceHost


async def main() -> None:
    config = Config.from_env()
    logging.setup(config.log_format, config.log_level)
    host = ServiceHost(spec(), config)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await host.start()
    await stop.wait()
    await host.stop()


if __name__ == "__main__":
    asyncio.run(main())
