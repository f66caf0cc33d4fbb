"""Least privilege in PostgreSQL: one login role per service, owning its schema and nothing else.

A service's role (``cordon_<service>``, :func:`role`) owns the service's schema and everything in
it, so its DDL (``store.migrate``) and its writes need nothing more; it is granted nothing on any
other schema, so the registry's personal tables (``registry.residents``) are readable by the
registry's role alone, and by the database's owner. What the services read of one another comes
over the bus (each keeps its own copies, ``shared.directory``), never from another schema, so
no role is granted anything across schemas.

The views service also makes a schema per generation (``views_g<N>``): its role has CREATE on the
database, and owns what it makes. The operators' commands (reconcile, backup and restore,
republish, dead letters, views rebuild) keep the admin DSN: they read every schema, and some
write into several; a rebuild works as the views role (:func:`act_as`) so that what it builds
stays the service's.

:func:`provision` runs as an administrator: ``cordon up`` at every start, ``cordon db roles`` in a
deployment. A superuser is what has been tried; a role with CREATEROLE owning the database should
do if it may ``SET ROLE`` to the roles it creates (``createrole_self_grant = 'set'`` on PostgreSQL
16 and later: giving a schema to a role needs it) — untested. It is idempotent and
safe to run concurrently, and adopts a record from before roles (or restored by an administrator):
schemas and their objects owned by someone else are given to the service's role. The key
database (``<database>_keys``) is made here too: the registry role's, with a schema of the
registry's and one of the checkpoint's, each readable by its own role alone.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

#: The services with a schema of their own (the web gateway uses no PostgreSQL).
SERVICES = ("registry", "checkpoint", "quarantine", "logistics", "views", "audit")
#: Schemas a role owns besides its own (a pattern for ``~``): the views' generations.
EXTRA_SCHEMAS = {"views": r"^views_g[0-9]+$"}
#: Roles allowed to create schemas in the database (the views' generations).
CREATES_SCHEMAS = frozenset({"views"})
#: The services with a schema of their own in the key database (their personal data's keys).
KEY_SCHEMAS = ("registry", "checkpoint")


def role(service: str) -> str:
    """The PostgreSQL role of ``service``: ``cordon_<service>``."""
    if service not in SERVICES:
        raise ValueError(f"no database role for {service!r} (one of {', '.join(SERVICES)})")
    return f"cordon_{service}"


def new_password() -> str:
    """A fresh password: 32 random bytes, URL-safe (it goes into a DSN unquoted)."""
    return secrets.token_urlsafe(32)


def password_file(folder: Path, service: str) -> Path:
    """Where a service's PostgreSQL password is kept: ``<folder>/pg/<service>.password``."""
    role(service)  # a known service
    return folder / "pg" / f"{service}.password"


def ensure_passwords(folder: Path, services: Iterable[str] = SERVICES) -> dict[str, str]:
    """Each service's password from ``folder/pg`` (``<data dir>/auth`` for `cordon up`), made
    (mode 0600, folder 0700) the first time and kept after: {service: password}."""
    from shared.auth import _write_secret

    passwords = {}
    for service in services:
        path = password_file(folder, service)
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_secret(path, new_password() + "\n", replace=False)  # two starts at once: one wins
        passwords[service] = path.read_text(encoding="utf-8").strip()
    return passwords


def role_dsn(admin_dsn: str, service: str, password: str | None = None) -> str:
    """``admin_dsn`` (same server and database) as ``service``'s role, with ``password`` if given
    (none: the service reads it from ``CORDON_PG_PASSWORD_FILE``)."""
    parts = urlsplit(admin_dsn)
    hostport = parts.netloc.rpartition("@")[2]
    user = role(service) + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}"))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def statements(database: str, passwords: Mapping[str, str | None], services: Iterable[str] = SERVICES) -> list[str]:
    """The SQL that :func:`provision` runs, in order (also what a deployment's init could run by
    hand): roles, the database's grants, each schema given to its role with what is in it."""
    db = _ident(database)
    sql = [f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",  # no role connects unless granted below
           "REVOKE CREATE ON SCHEMA public FROM PUBLIC"]
    for service in services:
        name, password = role(service), passwords.get(service)
        # concurrent CREATE ROLEs (two databases provisioned at once) race on pg_authid's index
        sql.append(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; "
                   "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
        if password:
            sql.append(f"ALTER ROLE {name} LOGIN PASSWORD {_literal(password)}")
        sql.append(f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {name}")
        if service in CREATES_SCHEMAS:
            sql.append(f"GRANT CREATE ON DATABASE {db} TO {name}")
        sql.append(f"CREATE SCHEMA IF NOT EXISTS {service} AUTHORIZATION {name}")
        sql.append(_adopt(service, name))
    return sql


def _adopt(service: str, name: str) -> str:
    """A DO block giving ``name`` the service's schemas and every table, view, free-standing
    sequence and function in them that someone else owns (a record from before roles)."""
    pattern = EXTRA_SCHEMAS.get(service, "^$")
    return f"""DO $$ DECLARE s record; r record; BEGIN
    FOR s IN SELECT n.oid, n.nspname FROM pg_namespace n
             WHERE n.nspname = '{service}' OR n.nspname ~ '{pattern}' LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO {name}', s.nspname);
        FOR r IN SELECT c.oid::regclass AS obj FROM pg_class c WHERE c.relnamespace = s.oid
                 AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relowner <> '{name}'::regrole LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO {name}', r.obj);  -- its indexes and serials too
        END LOOP;
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS obj FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE (n.nspname = '{service}' OR n.nspname ~ '{pattern}') AND c.relkind = 'S'
             AND c.relowner <> '{name}'::regrole LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO {name}', r.obj);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS obj FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE (n.nspname = '{service}' OR n.nspname ~ '{pattern}') AND p.proowner <> '{name}'::regrole LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {name}', r.obj);
    END LOOP;
END $$"""


async def provision(admin_dsn: str, passwords: Mapping[str, str | None] | None = None,
                    services: Iterable[str] = SERVICES) -> None:
    """Create (or bring up to date) every service's role and schema on the database of
    ``admin_dsn``; ``passwords`` {service: password} sets them (a missing one: left as it is).
    asyncpg.InsufficientPrivilegeError if the DSN's user may not create roles."""
    services = tuple(services)
    conn = await asyncpg.connect(admin_dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        async with conn.transaction():
            # one provisioner per database at a time (two `cordon up`s, two init jobs)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cordon:roles'))")
            for sql in statements(database, passwords or {}, services):
                await conn.execute(sql)
    finally:
        await conn.close()
    keeping = [s for s in KEY_SCHEMAS if s in services]
    if keeping:
        await _provision_keys(admin_dsn, f"{database}_keys", keeping)


async def _provision_keys(admin_dsn: str, keys_db: str, services: list[str]) -> None:
    """The key database (``<database>_keys``, shared/keystore.py): made here, since no service's
    role may create databases; owned by the registry's role (a key database made before roles is
    given to it). Each service of :data:`KEY_SCHEMAS` may connect and owns its schema there, and
    nothing else: the checkpoint's role reads the visitors' keys, not the residents'; the
    registry's, though it owns the database, is granted nothing on the checkpoint's schema."""
    from shared.embedded import ensure_database

    db = _ident(keys_db)
    keys_dsn = await ensure_database(admin_dsn, keys_db)
    conn = await asyncpg.connect(keys_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cordon:roles'))")
            sql = [f"REVOKE ALL ON DATABASE {db} FROM PUBLIC", "REVOKE CREATE ON SCHEMA public FROM PUBLIC"]
            if "registry" in services:
                sql.append(f"ALTER DATABASE {db} OWNER TO {role('registry')}")
            for service in services:
                name = role(service)
                sql += [f"GRANT CONNECT ON DATABASE {db} TO {name}",
                        f"CREATE SCHEMA IF NOT EXISTS {service} AUTHORIZATION {name}", _adopt(service, name)]
            for statement in sql:
                await conn.execute(statement)
    finally:
        await conn.close()


async def act_as(conn: asyncpg.Connection, service: str) -> None:
    """``SET ROLE`` to ``service``'s role if it owns the service's schema in this database (an
    administrator's connection doing the service's work: what it creates is the service's).
    Nothing when roles are not provisioned for this database."""
    name = role(service)
    # roles are the server's, not the database's: the role must own the service's schema *here*
    # (provisioned for this database), not merely exist because another database has roles
    if await conn.fetchval("SELECT 1 FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
                           "WHERE n.nspname = $1 AND r.rolname = $2", service, name):
        await conn.execute(f"SET ROLE {name}")
