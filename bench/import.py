#!/usr/bin/env python
"""`cordon import arrivals` against a running registry: rows/s of a city's list, first run and again.

    python bench/import.py [--rows 10000] [--bad 0.03] [--in-flight 256]

One run starts embedded NATS (operator mode) and PostgreSQL (durable defaults) in a temp dir and
the registry service as `cordon up` runs it, registers a compound and `--residents` residents
whose ID numbers head the list, writes a list of `--rows` arrivals (`--bad` of them bad: half
refused by the import's own checks, half by the registry), then runs `cordon import arrivals FILE
--json` as a process with a staff identity's credentials, twice: the first run registers (arrivals
of the residents, pending registrations of the others), the second finds every row there already.
Figures: each run's rows/s as the CLI measures it (reading the file to the last reply) and its
wall time as a process (start-up included). Target (printed, not asserted): >= 1,000 rows/s.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from bench import common  # noqa: E402
from services.demo.tables import table  # noqa: E402
from shared.idcard import with_check_digit  # noqa: E402
from shared.identity import Identity  # noqa: E402

COMMUNITY = "changning.chengjiaqiao.nangong"
TARGET = 1000.0
COLUMNS = ["name", "id_number", "phone", "origin", "transport", "transport_number", "arrived_on", "city_class",
           "risk_area_visited", "compound", "building", "address", "visited"]


def id_number(n: int) -> str:
    return with_check_digit(f"3101051980{n:07d}")


def write_list(path: Path, rows: int, bad: float, residents: int) -> int:
    """The city's list; the number of bad rows."""
    every = max(2, round(1 / bad)) if bad > 0 else 0
    n_bad = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        for i in range(rows):
            row = {"name": "王小伟", "id_number": id_number(i), "phone": "13800000000", "origin": "武汉",
                   "transport": "train", "transport_number": "G1234", "arrived_on": "2020-02-16",
                   "city_class": "AB"[i % 2], "risk_area_visited": "no", "compound": "bench-1", "building": "b1",
                   "address": f"b1 room {i}", "visited": "武汉|2020-02-01|2020-02-10"}
            if every and i % every == every - 1 and i >= residents:
                n_bad += 1
                row.update({"arrived_on": "2020-02-31"} if n_bad % 2 else {"compound": "no-such-compound"})
            writer.writerow(row)
    return n_bad


class ImportBench(common.BenchBase):
    def __init__(self, args):
        super().__init__("cordon-bench-import-")
        self.args = args

    async def setup(self, nc) -> None:
        """The compound (sent until the registry answers) and the residents of the list's head."""
        async def ok(command: str, body: dict) -> dict:
            msg = await nc.request(f"cordon.cmd.registry.{command}", json.dumps(
                {"command_id": f"bench-{command}-{body.get('id_number', '')}", "actor": "staff:bench", **body},
                ensure_ascii=False).encode(), timeout=5)
            reply = json.loads(msg.data)
            if not reply["ok"]:
                raise RuntimeError(f"{command} refused: {reply['error']}")
            return reply

        deadline = time.monotonic() + 60
        while True:
            try:
                await ok("register_compound", {"community": COMMUNITY, "compound": "bench-1", "name": "bench",
                                               "buildings": ["b1"], "gates": ["g1"]})
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the registry did not answer:\n{self.log_tail('registry')}") from None
                await asyncio.sleep(0.2)
        home = (await ok("register_household", {"community": COMMUNITY, "compound": "bench-1", "building": "b1",
                                                "address": "b1 room 0"}))["events"][0]["data"]["household"]
        for i in range(self.args.residents):
            await ok("register_resident", {"household": home, "name": "李四", "id_number": id_number(i),
                                           "birth_year": 1980})

    def import_once(self, path: Path, creds: Path) -> dict:
        env = {**os.environ, "CORDON_NATS_URL": self.nats.url, "CORDON_LOG_LEVEL": "warning"}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "services.cli", "import", "arrivals", str(path), "--json",
                               "--creds", str(creds), "--in-flight", str(self.args.in_flight)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode not in (0, 1):
            raise RuntimeError(f"cordon import exited {done.returncode}: {done.stderr[-2000:]}")
        return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": wall}

    async def run(self) -> dict:
        a = self.args
        await self.start_servers()
        self.service("registry")
        nc = await common.connect(self.nats.url)
        try:
            await self.setup(nc)
        finally:
            await nc.close()
        _, text = self.authority.user_creds(Identity(name="bench-staff", role="staff", scope=COMMUNITY))
        creds = self.tmp / "staff.creds"
        creds.write_text(text)
        source = self.tmp / "arrivals.csv"
        bad = write_list(source, a.rows, a.bad, a.residents)
        print(f"bench/import: {a.rows:,} rows ({bad} bad), {a.residents} of them residents", file=sys.stderr)
        first = self.import_once(source, creds)
        again = self.import_once(source, creds)
        return {"bench": "import", "rows": a.rows, "bad_rows": bad, "residents": a.residents,
                "in_flight": a.in_flight, "first_rows_per_s": first["rows_per_s"], "first_wall_s": first["wall_s"],
                "again_rows_per_s": again["rows_per_s"], "again_wall_s": again["wall_s"],
                "registered": first["registered"], "pending": first["pending"],
                "refused": first["refused"], "invalid": first["invalid"], "again_already_there": again["already_there"],
                "again_new": again["registered"] + again["pending"], "target_rows_per_s": TARGET}


def show(r: dict) -> str:
    rows = [("first run", r["first_rows_per_s"], round(r["first_wall_s"], 1), f"{r['registered']} registered, "
             f"{r['pending']} pending, {r['refused']} refused, {r['invalid']} invalid"),
            ("again", r["again_rows_per_s"], round(r["again_wall_s"], 1), f"{r['again_already_there']} already there, "
             f"{r['again_new']} new")]
    verdict = "meets" if r["first_rows_per_s"] >= TARGET else "BELOW"
    return (table(("run", "rows/s", "wall s", "rows"), rows)
            + f"\n{verdict} the target of {TARGET:,.0f} rows/s (first run)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--bad", type=float, default=0.03, help="share of bad rows (default 0.03)")
    parser.add_argument("--residents", type=int, default=100, help="rows whose ID numbers are residents' (100)")
    parser.add_argument("--in-flight", type=int, default=256)
    sys.exit(common.run(ImportBench(parser.parse_args()), show))
