"""Each service's PostgreSQL role: its name, its DSN, its password file (tests/integration/test_pg_roles.py
puts them before a real server)."""
from __future__ import annotations

import stat
from urllib.parse import unquote, urlsplit

import pytest

from services.supervisor import pg_env
from shared import pgroles


def test_a_service_s_dsn_is_the_administrator_s_server_and_database_as_its_own_role():
    admin = "postgresql://postgres:s3cret@db.example:6543/cordon?sslmode=require"
    # Without a password: the service reads it from its CORDON_PG_PASSWORD_FILE
    assert pgroles.role_dsn(admin, "registry") == "postgresql://cordon_registry@db.example:6543/cordon?sslmode=require"
    # With one: quoted, whatever it holds
    dsn = urlsplit(pgroles.role_dsn(admin, "views", "p@ss:w/rd%?#"))
    assert (dsn.username, unquote(dsn.password), dsn.hostname, dsn.path) == ("cordon_views", "p@ss:w/rd%?#",
                                                                          "db.example", "/cordon")


def test_only_the_six_services_have_a_role():
    assert [pgroles.role(s) for s in pgroles.SERVICES] == [
        "cordon_registry", "cordon_checkpoint", "cordon_quarantine", "cordon_logistics", "cordon_views", "cordon_audit"]
    with pytest.raises(ValueError):
        pgroles.role("web")  # the gateway uses no PostgreSQL


def test_a_password_is_sql_quoted_and_set_only_when_given():
    sql = pgroles.statements("cordon", {"registry": "it's"}, ["registry", "audit"])
    assert "ALTER ROLE cordon_registry LOGIN PASSWORD 'it''s'" in sql
    assert not [line for line in sql if line.startswith("ALTER ROLE cordon_audit")]
    # and only the views' role may create schemas (its generations)
    assert not [line for line in sql if line.startswith("GRANT CREATE ON DATABASE")]
    assert 'GRANT CREATE ON DATABASE "cordon" TO cordon_views' in pgroles.statements("cordon", {}, ["views"])


def test_passwords_are_made_once_0600_and_kept(tmp_path):
    first = pgroles.ensure_passwords(tmp_path / "auth")
    assert set(first) == set(pgroles.SERVICES) and len(set(first.values())) == len(first)
    assert pgroles.ensure_passwords(tmp_path / "auth") == first
    folder = tmp_path / "auth" / "pg"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
        f"{s}.password": 0o600 for s in pgroles.SERVICES}


def test_cordon_up_hands_each_child_its_own_role_and_the_gateway_no_postgresql(tmp_path):
    env = {"CORDON_PG_DSN": "postgresql://postgres@127.0.0.1:55432/cordon", "CORDON_PG_PASSWORD_FILE": "/admin",
           "CORDON_NATS_URL": "nats://127.0.0.1:4222"}
    roles = {s: pgroles.password_file(tmp_path, s) for s in pgroles.SERVICES}
    registry = pg_env(env, "registry", roles)
    assert registry["CORDON_PG_DSN"] == "postgresql://cordon_registry@127.0.0.1:55432/cordon"
    assert registry["CORDON_PG_PASSWORD_FILE"] == str(tmp_path / "pg" / "registry.password")
    web = pg_env(env, "web", roles)
    assert web == {"CORDON_NATS_URL": "nats://127.0.0.1:4222"}
    # without roles (a server whose user may not create them): the one DSN, as before
    assert pg_env(env, "registry", None) == env
