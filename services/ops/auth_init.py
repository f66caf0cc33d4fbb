"""`cordon auth init`: a deployment's NATS authority, and what each part of the deployment is handed.

    cordon auth init --dir D [--nats-conf-out FILE] [--jwt-dir DIR] [--k8s-secrets FILE]

`cordon up` sets up the authority of its own embedded server; containers and clusters run the
servers themselves, so this is that step on its own. It creates the authority's keys in ``D`` (or
keeps those already there) and writes, every file mode 0600:

- the operator-mode part of the NATS configuration, which every node's config ``include``s
  (``--nats-conf-out``, default ``D/nats/auth.conf``): the operator, the system account and the
  full resolver keeping account JWTs in ``--jwt-dir`` *on the NATS node* (default ``/data/jwt``,
  beside JetStream's store in the deploy configs), preloaded with each account's latest JWT;
- every service's and the web gateway's credentials, ``D/services/<name>.creds``, handed to each
  as ``CORDON_NATS_CREDS``; the operators' ``D/admin.creds``;
- every service's PostgreSQL password, ``D/pg/<service>.password``, for its own role (handed to
  it as ``CORDON_PG_PASSWORD_FILE``; ``cordon db roles`` sets them in PostgreSQL);
- the registry's master key, ``D/registry/master.key`` (random, made once and kept: it wraps every
  resident's data key), handed to the registry alone as ``CORDON_MASTER_KEY_FILE`` (a folder of its
  own: compose mounts folders, not single files);
- with ``--k8s-secrets FILE``: the Kubernetes Secrets the manifests in ``deploy/k8s`` reference
  (``cordon-nats-auth``, ``cordon-nats-creds-<name>``, ``cordon-pg-<service>``,
  ``cordon-master-key``), for ``kubectl apply -f FILE``.

Run it again at will: keys and credentials already there are kept (a service's creds are not
reissued), and the include is written anew from them (the same operator; the accounts' latest
JWTs, revocations included).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from services.cli import SERVICES
from services.ops.cli import _fail
from shared import pgroles, pii
from shared.config import Config

#: Who gets credentials of the role ``service``: every service, and the web gateway.
IDENTITIES = (*SERVICES, "web")
#: Where a NATS node keeps pushed account JWTs, by default: beside JetStream's store in deploy/nats.
JWT_DIR = "/data/jwt"
PART_OF = {"app.kubernetes.io/part-of": "cordon"}


def add_commands(sub: argparse._SubParsersAction) -> None:
    auth = sub.add_parser("auth", help="a deployment's NATS authority: keys, server include, credentials")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    init = auth_sub.add_parser("init", help="create (or keep) the authority's keys; write the NATS include "
                               "and every service's credentials")
    init.add_argument("--dir", required=True, help="the authority's folder (created 0700; kept secret)")
    init.add_argument("--nats-conf-out", default=None, help="the operator-mode include for nats-server "
                      "(default <dir>/nats/auth.conf)")
    init.add_argument("--jwt-dir", default=JWT_DIR, help="where each NATS node keeps account JWTs "
                      f"(a path on the node; default {JWT_DIR})")
    init.add_argument("--k8s-secrets", default=None, help="also write the Kubernetes Secrets that "
                      "deploy/k8s references to this file (apply it; never commit it)")
    init.set_defaults(run=run_init)


def run_init(args: argparse.Namespace, config: Config) -> int:
    try:
        written = init(Path(args.dir), Path(args.nats_conf_out) if args.nats_conf_out else None,
                       args.jwt_dir, Path(args.k8s_secrets) if args.k8s_secrets else None)
    except OSError as exc:
        return _fail(f"auth init: {exc}")
    for what, path in written.items():
        print(f"cordon: {what:<16} {path}")
    return 0


def init(folder: Path, nats_conf: Path | None = None, jwt_dir: str = JWT_DIR,
         k8s_secrets: Path | None = None) -> dict[str, Path]:
    """Open (or create) the authority in ``folder`` and write what a deployment needs; returns
    {what: path} of every file handed out."""
    from shared.auth import Authority

    authority = Authority.open(folder)
    nats_conf = nats_conf or authority.path / "nats" / "auth.conf"
    include = authority.operator_config(jwt_dir)
    write_private(nats_conf, include)
    written = {"nats include": nats_conf, "admin": authority.admin_creds()}
    creds = {name: authority.service_creds(name) for name in IDENTITIES}
    written.update(creds)
    passwords = pgroles.ensure_passwords(authority.path)
    written.update({f"pg {name}": pgroles.password_file(authority.path, name) for name in passwords})
    written["master key"] = master = pii.ensure_key_file(master_key_file(authority.path))
    if k8s_secrets is not None:
        write_private(k8s_secrets, kubernetes_secrets(include, creds, passwords, master.read_text()))
        written["k8s secrets"] = k8s_secrets
    return written


def master_key_file(folder: Path) -> Path:
    """Where ``auth init`` keeps the registry's master key: ``<folder>/registry/master.key``."""
    return folder / "registry" / "master.key"


def kubernetes_secrets(include: str, creds: dict[str, Path], passwords: dict[str, str] | None = None,
                       master_key: str | None = None) -> str:
    """The Secrets deploy/k8s mounts, as a YAML stream (each document JSON, which YAML reads):
    ``cordon-nats-auth`` {auth.conf}, ``cordon-nats-creds-<name>`` {nats.creds},
    ``cordon-pg-<service>`` {password} (its PostgreSQL role's) and ``cordon-master-key``
    {master.key} (the registry's)."""
    docs = [_secret("cordon-nats-auth", {"auth.conf": include})]
    docs += [_secret(f"cordon-nats-creds-{name}", {"nats.creds": path.read_text()})
             for name, path in creds.items()]
    docs += [_secret(f"cordon-pg-{name}", {"password": password}) for name, password in (passwords or {}).items()]
    if master_key is not None:
        docs.append(_secret("cordon-master-key", {"master.key": master_key}))
    return "".join(f"---\n{json.dumps(doc, indent=2)}\n" for doc in docs)


def _secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": dict(PART_OF)}, "stringData": data}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 (its folder created 0700 if missing)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file of that name may have had other bits
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)
