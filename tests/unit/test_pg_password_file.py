"""CORDON_PG_PASSWORD_FILE: a deployment keeps the DSN in plain configuration and the password in
a secret file, the same one PostgreSQL's image reads (tests/integration/test_pg_password_login.py
logs in with it to a server that asks for a password)."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from shared.config import Config, shown_dsn

DSN = "postgresql://cordon@postgres:5432/cordon"


def env(dsn: str, password_file) -> dict[str, str]:
    return {"CORDON_PG_DSN": dsn, "CORDON_PG_PASSWORD_FILE": str(password_file)}


def test_the_password_in_the_file_goes_into_the_dsn_whatever_characters_it_has(tmp_path):
    # Given a password with every character a URL gives meaning to, written with a newline (echo)
    secret = tmp_path / "pg_password"
    secret.write_text("p@ss:w/rd%?#&=+ 密\n")
    # When the configuration is read
    dsn = Config.from_env(env(DSN, secret)).pg_dsn
    # Then the DSN carries exactly that password (the newline is not part of it), nothing else changed
    parts = urlsplit(dsn)
    assert unquote(parts.password) == "p@ss:w/rd%?#&=+ 密"
    assert (parts.username, parts.hostname, parts.port, parts.path) == ("cordon", "postgres", 5432, "/cordon")


def test_a_dsn_with_its_own_password_keeps_it(tmp_path):
    # cordon up hands its children the whole DSN while the file is still in their environment
    secret = tmp_path / "pg_password"
    secret.write_text("from-the-file")
    given = "postgresql://cordon:already@postgres:5432/cordon"
    assert Config.from_env(env(given, secret)).pg_dsn == given


def test_without_the_file_the_dsn_is_used_as_it_is():
    assert Config.from_env({"CORDON_PG_DSN": DSN}).pg_dsn == DSN


@pytest.mark.parametrize("case", ["missing", "empty", "no user"])
def test_a_password_file_that_cannot_be_used_stops_the_process_with_what_to_do(tmp_path, case):
    secret = tmp_path / "pg_password"
    if case != "missing":
        secret.write_text("" if case == "empty" else "s3cret")
    dsn = "postgresql://postgres:5432/cordon" if case == "no user" else DSN
    with pytest.raises(SystemExit, match="CORDON_PG_PASSWORD_FILE") as stop:
        Config.from_env(env(dsn, secret))
    assert "s3cret" not in str(stop.value)


def test_a_dsn_is_printed_without_its_password():
    assert shown_dsn("postgresql://cordon:s%40cret@postgres:5432/cordon") == "postgresql://cordon:***@postgres:5432/cordon"
    assert shown_dsn(DSN) == DSN
