"""A PostgreSQL that asks for a password, as the deployments run it: Cordon logs in with the
password from CORDON_PG_PASSWORD_FILE (the file PostgreSQL's image reads as POSTGRES_PASSWORD_FILE)
and a DSN that holds none; without the file it is refused."""
from __future__ import annotations

import asyncpg
import pytest

from shared.config import Config
from shared.embedded import EmbeddedPostgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

#: Every character a URL gives meaning to, and a space.
PASSWORD = "p@ss:w/rd%?#&=+ x"


async def test_cordon_logs_in_with_the_password_file_and_is_refused_without(tmp_path):
    # Given a PostgreSQL whose role cordon must give its password (scram), the superuser trusted
    server = EmbeddedPostgres(tmp_path / "pg", extra_settings={"fsync": "off"})
    await server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute(f"CREATE ROLE cordon LOGIN PASSWORD '{PASSWORD}'")
            await conn.execute("CREATE DATABASE cordon OWNER cordon")
            hba = server.data_dir / "pg_hba.conf"
            hba.write_text("host all postgres 127.0.0.1/32 trust\n"
                           "host all all 127.0.0.1/32 scram-sha-256\n")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        dsn = f"postgresql://cordon@{server.host}:{server.port}/cordon"
        secret = tmp_path / "pg_password"
        secret.write_text(PASSWORD + "\n")  # as `echo … > file` writes it
        # When Cordon reads its configuration with the password file
        config = Config.from_env({"CORDON_PG_DSN": dsn, "CORDON_PG_PASSWORD_FILE": str(secret)})
        # Then it logs in as cordon
        conn = await asyncpg.connect(config.pg_dsn)
        try:
            assert await conn.fetchval("SELECT current_user") == "cordon"
        finally:
            await conn.close()
        # and the same DSN without the file is refused
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(Config.from_env({"CORDON_PG_DSN": dsn}).pg_dsn)
    finally:
        await server.stop()
