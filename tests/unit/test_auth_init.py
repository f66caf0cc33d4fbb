"""`cordon auth init`: what a deployment's NATS authority writes, and that running it again changes
no key and no credential (tests/integration/test_deployed_nats.py puts it before real servers)."""
from __future__ import annotations

import re
import stat
from pathlib import Path

import yaml

from shared import pii

from services.cli import SERVICES, main
from services.ops.auth_init import IDENTITIES
from shared.auth import CORDON, Authority, decode_jwt


def creds_jwt(path: Path) -> dict:
    return decode_jwt(re.search(r"-----BEGIN NATS USER JWT-----\n(.+?)\n", path.read_text()).group(1))


def include_operator(text: str) -> dict:
    return decode_jwt(re.search(r"^operator: (\S+)$", text, re.M).group(1))


def every_file(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_it_hands_every_service_and_the_gateway_their_own_credentials_and_nats_its_include(tmp_path, capsys):
    # Given an empty folder for the authority
    folder = tmp_path / "auth"
    # When an operator runs auth init
    assert main(["auth", "init", "--dir", str(folder)]) == 0
    # Then every service and the web gateway have creds of their own identity, signed by CORDON
    authority = Authority.open(folder)
    assert set(IDENTITIES) == {*SERVICES, "web"}
    for name in IDENTITIES:
        claims = creds_jwt(folder / "services" / f"{name}.creds")
        assert claims["name"] == name and claims["iss"] == authority.public_key(CORDON)
        assert "role:service" in claims["nats"]["tags"]
    assert creds_jwt(folder / "admin.creds")["name"] == "admin"
    # and the include trusts this authority's operator, its accounts' JWTs kept on the node in /data/jwt
    include = (folder / "nats" / "auth.conf").read_text()
    assert include_operator(include)["sub"] == authority.public_key("operator")
    assert 'dir: "/data/jwt"' in include
    assert all(authority.public_key(which) in include for which in ("SYS", "CORDON", "CITY"))
    # and it says where each file is
    out = capsys.readouterr().out
    assert str(folder / "services" / "web.creds") in out and str(folder / "nats" / "auth.conf") in out


def test_every_file_it_writes_is_readable_by_its_owner_only(tmp_path):
    folder = tmp_path / "auth"
    secrets = tmp_path / "k8s" / "secrets.yaml"
    assert main(["auth", "init", "--dir", str(folder), "--k8s-secrets", str(secrets)]) == 0
    for path in [*folder.rglob("*"), secrets]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


def test_running_it_again_changes_no_key_and_no_credential(tmp_path):
    # Given an authority set up once, its include written elsewhere
    folder, include = tmp_path / "auth", tmp_path / "nats" / "auth" / "auth.conf"
    assert main(["auth", "init", "--dir", str(folder), "--nats-conf-out", str(include)]) == 0
    before = every_file(folder)
    first_include = include.read_text()
    # When it runs again (compose runs auth-init at every `up`)
    assert main(["auth", "init", "--dir", str(folder), "--nats-conf-out", str(include)]) == 0
    # Then every key, account JWT and creds file is byte for byte the same
    assert every_file(folder) == before
    # and the include, written anew, trusts the same operator and preloads the same accounts
    again = include.read_text()
    assert include_operator(again)["sub"] == include_operator(first_include)["sub"]
    assert again.split("resolver:")[1] == first_include.split("resolver:")[1]


def test_it_keeps_an_include_with_the_jwt_dir_the_nodes_use(tmp_path):
    include = tmp_path / "auth.conf"
    assert main(["auth", "init", "--dir", str(tmp_path / "auth"), "--nats-conf-out", str(include),
                 "--jwt-dir", "/var/lib/nats/jwt"]) == 0
    assert 'dir: "/var/lib/nats/jwt"' in include.read_text()


def test_the_kubernetes_secrets_hold_the_include_and_each_identitys_creds(tmp_path):
    # When auth init also writes the Kubernetes Secrets
    folder, secrets = tmp_path / "auth", tmp_path / "secrets.yaml"
    assert main(["auth", "init", "--dir", str(folder), "--k8s-secrets", str(secrets)]) == 0
    docs = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(secrets.read_text())}
    # Then the NATS nodes' Secret is the include, and each identity's is its creds file
    assert docs["cordon-nats-auth"]["stringData"] == {"auth.conf": (folder / "nats" / "auth.conf").read_text()}
    for name in IDENTITIES:
        assert docs[f"cordon-nats-creds-{name}"]["stringData"] == {
            "nats.creds": (folder / "services" / f"{name}.creds").read_text()}
    # And each service's PostgreSQL role has its password, the one in <dir>/pg (the web gateway none)
    for name in SERVICES:
        assert docs[f"cordon-pg-{name}"]["stringData"] == {
            "password": (folder / "pg" / f"{name}.password").read_text().strip()}
    # And the registry's master key is the one in <dir>/registry
    assert docs["cordon-master-key"]["stringData"] == {"master.key": (folder / "registry" / "master.key").read_text()}
    assert set(docs) == {"cordon-nats-auth", *(f"cordon-nats-creds-{name}" for name in IDENTITIES),
                         *(f"cordon-pg-{name}" for name in SERVICES), "cordon-master-key"}
    assert {doc["kind"] for doc in docs.values()} == {"Secret"}


def test_the_registry_s_master_key_is_made_once_secret_and_kept(tmp_path):
    # Given auth init run twice on the same folder
    folder = tmp_path / "auth"
    assert main(["auth", "init", "--dir", str(folder)]) == 0
    key = folder / "registry" / "master.key"
    first = key.read_text()
    assert main(["auth", "init", "--dir", str(folder)]) == 0
    # Then the key is one the registry reads (32 bytes, base64), 0600 in a 0700 folder, the same after
    assert len(pii.from_env({"CORDON_MASTER_KEY_FILE": str(key)}).current) > 0 and key.read_text() == first
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700


def test_each_service_gets_a_postgresql_password_of_its_own_kept_across_runs(tmp_path):
    # Given auth init run twice on the same folder
    folder = tmp_path / "auth"
    assert main(["auth", "init", "--dir", str(folder)]) == 0
    first = {name: (folder / "pg" / f"{name}.password").read_text() for name in SERVICES}
    assert main(["auth", "init", "--dir", str(folder)]) == 0
    # Then each service has a long password of its own, 0600, the same after the second run
    assert len(set(first.values())) == len(SERVICES) and all(len(p.strip()) >= 40 for p in first.values())
    assert {name: (folder / "pg" / f"{name}.password").read_text() for name in SERVICES} == first
    assert all(stat.S_IMODE((folder / "pg" / f"{name}.password").stat().st_mode) == 0o600 for name in SERVICES)
