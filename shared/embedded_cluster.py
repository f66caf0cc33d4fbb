"""A 3-node NATS cluster with JetStream, as three local nats-server child processes (tests, dev).

Each node has its own data dir (``<data_dir>/n<i>``: store, config file, log) and three loopback
ports (clients, routes, HTTP monitoring), chosen at the first start and kept across restarts, so a
killed node comes back at the same place with the same store and rejoins. The ``CORDON`` stream is
made R3 on it by ``CORDON_STREAM_REPLICAS=3``; clients connect with :attr:`EmbeddedNatsCluster.urls`.

Ready means what a JetStream client needs: a meta leader is elected and every running node is a
current peer of the meta group, so a 3-replica stream can be placed.

Given an :class:`~shared.auth.Authority`, every node runs in operator mode (the authority's
operator, system account and full resolver, each node with its own account store in
``<node dir>/jwt``): a connection needs credentials, as on a single :class:`EmbeddedNats`.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import nats

from shared.auth import Authority
from shared.embedded import EmbeddedNats, _Child, _ignore, free_port, log

CLUSTER_NAME = "cordon"


def _config(name: str, host: str, port: int, route_port: int, http_port: int, store: Path,
            routes: list[int]) -> str:
    route_urls = "\n".join(f"    nats-route://{host}:{p}" for p in routes)
    return (f"server_name: {name}\nlisten: {host}:{port}\nhttp: {host}:{http_port}\n"
            f"jetstream {{\n  store_dir: \"{store}\"\n}}\n"
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {host}:{route_port}\n"
            f"  routes: [\n{route_urls}\n  ]\n}}\n")


class ClusterNode(_Child):
    """One nats-server of the cluster: a config file written before each start, a log in its dir."""
    _name = "nats-node"

    def __init__(self, name: str, data_dir: Path, host: str, authority: Authority | None = None) -> None:
        super().__init__(data_dir, None, host)
        self.name = name
        self.authority = authority
        self.route_port: int | None = None
        self.http_port: int | None = None
        self._log_from = 0

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def assign_ports(self) -> None:
        self.port = self.port or free_port(self.host)
        self.route_port = self.route_port or free_port(self.host)
        self.http_port = self.http_port or free_port(self.host)

    async def start(self, peers: list[int], timeout: float = 10.0) -> None:
        """Write the config (routes to `peers`' route ports), start, wait until clients connect."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        text = _config(self.name, self.host, self.port, self.route_port, self.http_port,
                       self.data_dir / "jetstream", peers)
        if self.authority is not None:
            text += self.authority.operator_config(self.data_dir / "jwt")
        conf.write_text(text)
        conf.chmod(0o600)
        log_path = self.data_dir / "nats.log"
        self._log_from = log_path.stat().st_size if log_path.exists() else 0  # this start's lines
        self._spawn([EmbeddedNats.binary(), "-c", str(conf)], log_path)

        async def probe() -> None:
            _, writer = await asyncio.open_connection(self.host, self.port)
            writer.close()

        await self._wait_ready(probe, timeout, log_path, 0.01)

    def port_taken(self) -> bool:
        """Whether this node's last start found one of its ports taken (its log says so)."""
        try:
            with open(self.data_dir / "nats.log", "rb") as f:
                f.seek(self._log_from)
                return b"address already in use" in f.read()
        except OSError:
            return False

    async def jsz(self, **query: str) -> dict:
        """This node's own JetStream view (monitoring ``/jsz``): its meta group, its streams' state."""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        url = f"http://{self.host}:{self.http_port}/jsz?{qs}"

        def get() -> dict:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.loads(resp.read())

        return await asyncio.to_thread(get)


class EmbeddedNatsCluster:
    """Three nats-server nodes, routes between every pair, JetStream on each (see module doc)."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", size: int = 3, *,
                 authority: Authority | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.authority = authority
        self.nodes = [ClusterNode(f"n{i + 1}", self.data_dir / f"n{i + 1}", host, authority) for i in range(size)]

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated: the form ``CORDON_NATS_URL`` takes for a cluster."""
        return ",".join(node.url for node in self.nodes)

    def url(self, i: int) -> str:
        """Node `i`'s own client URL."""
        return self.nodes[i].url

    def index(self, server_name: str) -> int:
        """The node called `server_name` (as stream info's ``cluster.leader`` names it)."""
        return next(i for i, node in enumerate(self.nodes) if node.name == server_name)

    async def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start every node; return once JetStream is available cluster-wide (see :meth:`wait_ready`).

        Free ports are chosen before the servers bind them, and other processes (other tests'
        servers) start meanwhile: a node can find its port taken and exit, while its start-up probe
        reached the other process. Then the nodes start again on fresh ports, up to ``attempts``
        times (seen in CI: ``bind: address already in use``, and a cluster with no meta leader)."""
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                node.assign_ports()
            routes = [node.route_port for node in self.nodes]
            try:
                started = await asyncio.gather(*(node.start(routes) for node in self.nodes), return_exceptions=True)
                if failed := [r for r in started if isinstance(r, BaseException)]:
                    raise failed[0]
                await self.wait_ready(timeout, every_node=True)
                return
            except RuntimeError as exc:
                if attempt == attempts or not any(node.port_taken() for node in self.nodes):
                    raise
                log.warning("nats-cluster.port_taken", attempt=attempt, error=str(exc)[:300])
                await self.stop()
                for node in self.nodes:
                    node.port = node.route_port = node.http_port = None

    async def start_node(self, i: int, timeout: float = 30.0) -> None:
        """Bring node `i` back (same ports, same store); return once it is a current meta peer again."""
        await self.nodes[i].start([node.route_port for node in self.nodes])
        await self.wait_ready(timeout)

    def kill(self, i: int) -> None:
        """SIGKILL node `i` (a crash: no goodbye to its peers)."""
        self.nodes[i].kill()

    async def stop(self) -> None:
        """Stop every node (idempotent)."""
        await asyncio.gather(*(node.stop() for node in self.nodes))

    async def wait_ready(self, timeout: float = 30.0, every_node: bool = False) -> None:
        """Until a meta leader is elected and sees every running node as a current peer, and
        JetStream answers through each running node; RuntimeError with the reason after `timeout`
        (at once if ``every_node`` and a node has exited)."""
        deadline = time.monotonic() + timeout
        while True:
            if every_node and (gone := [node.name for node in self.nodes if not node.running]):
                raise RuntimeError(f"NATS cluster node(s) {gone} exited; logs under {self.data_dir}")
            try:
                why = await self._not_ready()
            except Exception as exc:  # a node still starting: refused, no JetStream yet, ...
                why = repr(exc)
            if why is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"NATS cluster not ready after {timeout}s: {why}; logs under {self.data_dir}")
            await asyncio.sleep(0.1)

    async def _not_ready(self) -> str | None:
        """Why the cluster is not ready yet, or None."""
        running = [node for node in self.nodes if node.running]
        leaders = {((await node.jsz()).get("meta_cluster") or {}).get("leader") or None for node in running}
        if len(leaders) != 1 or None in leaders:
            return f"no meta leader all nodes agree on ({sorted(map(str, leaders))})"
        leader = next((n for n in running if n.name in leaders), None)
        if leader is None:
            return f"meta leader {leaders} is not running"
        # Only the leader knows whether its followers are current.
        replicas = ((await leader.jsz()).get("meta_cluster") or {}).get("replicas") or []
        current = {r["name"] for r in replicas if r.get("current") and not r.get("offline")}
        behind = [n.name for n in running if n is not leader and n.name not in current]
        if behind:
            return f"meta peers not current: {behind}"
        creds = {"user_credentials": self.authority.probe_creds()} if self.authority else {}
        for node in running:  # $JS.API.INFO through each node: JetStream answers there
            nc = await nats.connect(node.url, connect_timeout=1, allow_reconnect=False,
                                    max_reconnect_attempts=0, error_cb=_ignore, **creds)
            try:
                await nc.jetstream(timeout=2).account_info()
            finally:
                await nc.close()
        return None

    async def stream_states(self, stream: str) -> dict[str, tuple[int, int] | None]:
        """Per running node, its own copy of `stream`: (messages, last sequence), None if it has none."""
        states: dict[str, tuple[int, int] | None] = {}
        for node in self.nodes:
            if not node.running:
                continue
            jsz = await node.jsz(accounts="true", streams="true")
            found = None
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        state = detail.get("state") or {}
                        found = (state.get("messages", 0), state.get("last_seq", 0))
            states[node.name] = found
        return states
