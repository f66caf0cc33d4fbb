"""`cordon` as an operator runs it: commands as processes with only the variables the operator
sets, and `cordon up` started (until its ready line) and stopped (Ctrl-C)."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shared.auth import Authority
from shared.embedded import free_port
from tests.support.bus import remember


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any CORDON_* variable, plus ``variables``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}, **variables}


async def cordon(*argv: str, timeout: float = 120.0, **variables: str) -> tuple[int, str, str]:
    """Run ``cordon ARGV`` to its end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *argv,
                                                env=environment(**variables), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Up:
    """A running `cordon up` (no web gateway) on a data dir; its servers' URL and DSN as it printed them."""

    data_dir: Path
    proc: asyncio.subprocess.Process
    url: str
    dsn: str
    lines: list[str] = field(default_factory=list)

    @property
    def variables(self) -> dict[str, str]:
        """What an operator exports to run ops commands on it (as `cordon up` says)."""
        return {"CORDON_NATS_URL": self.url, "CORDON_PG_DSN": self.dsn, "CORDON_DATA_DIR": str(self.data_dir)}

    @classmethod
    async def start(cls, data_dir: Path, timeout: float = 90.0, **variables: str) -> "Up":
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "up", "--data-dir", str(data_dir), "--nats-port", str(free_port()),
            "--pg-port", str(free_port()), "--web-port", "0", "--metrics-port", "0", env=environment(**variables),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        lines: list[str] = []
        while not lines or not lines[-1].startswith("cordon: ready"):
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
            assert line, f"cordon up exited early: {lines}"
            lines.append(line)
        url = re.search(r"nats://\S+", "".join(lines)).group(0)
        dsn = re.search(r"postgresql://\S+", "".join(lines)).group(0)
        remember(url, Authority.open(data_dir / "auth"))  # tests.support.bus.connect(url) as its operator
        return cls(data_dir, proc, url, dsn, lines)

    async def stop(self) -> list[str]:
        """Ctrl-C; what it printed until it exited (0)."""
        self.proc.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(self.proc.stdout.read(), 60)).decode()
        assert await self.proc.wait() == 0, rest
        return rest.splitlines()
