"""The personal-data commands as people run them, as processes: ``cordon contact`` (staff, through
the web gateway) prints one record and leaves one PersonalDataViewed, is refused to another
committee's staff with nothing recorded; ``cordon erase-resident`` (operators, on NATS) asks first,
erases only when told yes, and the contact then shows the resident erased."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.support.board import LI_WEI, ZHAO_LEI, street
from tests.support.bus import creds_for
from tests.support.cli import environment
from tests.support.web import creds, gateway

pytestmark = pytest.mark.integration

ADDRESS = "b1-101 <east wing> & store"


async def cordon(*argv: str, stdin: bytes = b"", **variables: str) -> tuple[int, str, str]:
    """``cordon ARGV`` as a process, ``stdin`` typed into it: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *argv,
                                                env=environment(**variables), stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode, out.decode(), err.decode()


def creds_file(folder: Path, nats_url: str, identity) -> str:
    path = folder / f"{identity.name}.creds"
    path.write_text(creds(nats_url, identity)[1])
    return str(path)


async def reads(db) -> list[dict]:
    rows = await db.fetch("SELECT convert_from(envelope, 'UTF8') AS e FROM registry.events "
                          "WHERE type = 'PersonalDataViewed' ORDER BY position")
    return [json.loads(r["e"])["data"] for r in rows]


async def test_contact_prints_one_record_to_its_committees_staff_and_records_each_read(nats_url, pg_dsn, tmp_path):
    async with street(nats_url, pg_dsn, busy=False) as s, gateway(nats_url) as base:
        resident = next(iter(s.nangong.passes))  # the first household's: its address has markup in it
        li_wei, zhao_lei = (creds_file(tmp_path, nats_url, who) for who in (LI_WEI, ZHAO_LEI))
        ask = ("contact", "--resident", resident, "--purpose", "calling about the delivery", "--url", base)
        # when li-wei asks for a Nangong resident's contact
        code, out, err = await cordon(*ask, "--creds", li_wei)
        # then it prints the name, the door and the birth year, and says the read is recorded
        assert code == 0, err
        [row] = out.splitlines()
        assert row.split("\t")[:4] == ["王小伟", "-", ADDRESS, "1940"] and resident in row
        assert "PersonalDataViewed" in err
        [read] = await reads(s.db)
        assert (read["viewer"], read["subject"], read["purpose"]) == ("staff:li-wei", resident,
                                                                      "calling about the delivery")
        # and --json prints the registry's reply: a second read, recorded as the first
        code, out, _ = await cordon(*ask, "--creds", li_wei, "--json")
        assert code == 0 and json.loads(out)["contacts"][0]["name"] == "王小伟"
        assert len(await reads(s.db)) == 2
        # when Beixin's staff ask for the same resident: forbidden (exit 4), nothing printed or recorded
        code, out, err = await cordon(*ask, "--creds", zhao_lei)
        assert (code, out) == (4, "") and "forbidden" in err
        # and a purpose that says nothing is invalid (exit 2)
        code, out, err = await cordon("contact", "--resident", resident, "--purpose", "x", "--url", base,
                                      "--creds", li_wei)
        assert (code, out) == (2, "") and "purpose" in err
        assert len(await reads(s.db)) == 2


async def test_erase_resident_asks_first_and_then_the_contact_shows_the_resident_erased(nats_url, pg_dsn, tmp_path):
    async with street(nats_url, pg_dsn, busy=False) as s, gateway(nats_url) as base:
        resident = next(iter(s.nangong.passes))
        operator = {"CORDON_NATS_URL": nats_url, "CORDON_NATS_CREDS": creds_for(nats_url)}
        erase = ("erase-resident", "--resident", resident, "--legal-basis", "PIPL art. 47: the resident asked")

        async def erased_at():
            return await s.db.fetchval("SELECT erased_at FROM registry.residents WHERE resident = $1", resident)

        # when the operator answers anything but yes: nothing is erased (exit 2)
        code, _, err = await cordon(*erase, stdin=b"no\n", **operator)
        assert code == 2 and "Type yes" in err and "not erased" in err
        assert await erased_at() is None
        # when they type yes: the data key is deleted, ResidentErased recorded with the legal basis
        code, out, err = await cordon(*erase, stdin=b"yes\n", **operator)
        assert code == 0, err
        assert f"resident {resident} erased" in out and await erased_at() is not None
        basis = await s.db.fetchval("SELECT convert_from(envelope, 'UTF8')::jsonb->'data'->>'legal_basis' "
                                    "FROM registry.events WHERE type = 'ResidentErased'")
        assert basis == "PIPL art. 47: the resident asked"
        # and with --yes it asks nothing: erasing again is refused by the registry (exit 1)
        code, _, err = await cordon(*erase, "--yes", **operator)
        assert code == 1 and "refused" in err and "Type yes" not in err
        # then staff asking for the resident see only that they are erased
        code, out, _ = await cordon("contact", "--resident", resident, "--purpose", "calling about the delivery",
                                    "--url", base, "--creds", creds_file(tmp_path, nats_url, LI_WEI))
        assert code == 0 and out.startswith("(erased)") and "王小伟" not in out and ADDRESS not in out
