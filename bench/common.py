"""What every bench script does around its measurements: stop cleanly on Ctrl-C and SIGTERM,
print the table and, last, one JSON line; exit 1 when the run had errors."""
from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Callable


def run(bench, table: Callable[[dict], str], extra: dict | None = None) -> int:
    """Run ``bench.run()`` (then ``bench.stop()``), always ``bench.kill()`` what is left."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    async def go() -> dict:
        try:
            return await bench.run()
        finally:
            await bench.stop()

    try:
        r = asyncio.run(go())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.kill()  # whatever is left: services, servers, temp dir
    r.update(extra or {})
    print(table(r))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()},
                     ensure_ascii=False))
    return 1 if r.get("errors") else 0
