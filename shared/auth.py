"""Cordon's own NATS authority: the keys, the JWTs and the server configuration of operator mode.

NATS runs in operator mode (decentralized JWT auth): the server trusts one *operator* key, and
every account and user is a JWT that key (or an account key under it) signed. Cordon mints them
itself with ``nkeys`` (ed25519 keys in NATS's encoding, and the library nats-py already uses to
sign a connection's nonce): a JWT here is ``b64url(header).b64url(claims).b64url(signature)``,
as github.com/nats-io/jwt v2 writes it.

Three accounts under the operator ``cordon``:

- ``SYS``: the server's system account (account updates are pushed through it);
- ``CORDON``: JetStream on; Cordon's services and its operators, with no permission limits;
- ``CITY``: every other identity (staff, officers, city systems, gate devices). It reaches
  ``CORDON`` only through what ``CORDON`` exports: its commands and queries (as service imports
  with ``share``, so the server stamps the caller's verified identity on each request as
  ``Nats-Request-Info``), its events (a stream import: live feeds) and the JetStream calls a feed
  needs, imported under the local prefix :data:`JS_PREFIX`. Each user's permissions
  (:func:`permissions`) narrow that down to its jurisdiction, and the server enforces them.

A revoked identity is cut off by putting its public key in the account JWT's ``revocations``
and pushing the re-signed JWT to the server (:meth:`Authority.push_account`). The latest JWT of
each account is kept beside the keys, and the server configuration preloads that one: a restart
never brings back an account without its revocations.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import nats
import nkeys
from nats.aio.client import RawCredentials

from shared.bus import servers
from shared.identity import Identity

OPERATOR_NAME = "cordon"
SYS, CORDON, CITY = "SYS", "CORDON", "CITY"
ACCOUNTS = (SYS, CORDON, CITY)
#: Where a CITY client finds CORDON's JetStream API: ``nc.jetstream(prefix=JS_PREFIX)``.
JS_PREFIX = "JS.CORDON.API"
STREAM = "CORDON"
#: The roles whose users live in the CORDON account, with no permission limits.
INSIDE = ("operator", "service")
#: What an account JWT's limits say: -1 is "no limit". A JWT without limits allows no connection.
_LIMITS = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
           "conn": -1, "leaf": -1}
_JS_LIMITS = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
_PREFIX = {"operator": nkeys.PREFIX_BYTE_OPERATOR, SYS: nkeys.PREFIX_BYTE_ACCOUNT,
           CORDON: nkeys.PREFIX_BYTE_ACCOUNT, CITY: nkeys.PREFIX_BYTE_ACCOUNT}


class AuthorityError(RuntimeError):
    """The server refused what the authority asked of it (its message says why)."""


# -- JWT encoding --------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def encode_jwt(claim_type: str, subject: str, name: str, nats_claims: dict, signer: nkeys.KeyPair,
               iat: int | None = None) -> str:
    """A NATS JWT v2 of ``claim_type`` (operator, account, user) signed by ``signer``."""
    claims = {"iat": iat or int(time.time()), "iss": signer.public_key.decode(), "name": name, "sub": subject}
    # jti as Go computes it (base32 of the claims' sha512/256); the server does not check it.
    claims["jti"] = base64.b32encode(hashlib.new("sha512_256", _json(claims)).digest()).decode().rstrip("=")
    claims["nats"] = {**nats_claims, "type": claim_type, "version": 2}
    signing_input = f"{_b64(_json({'typ': 'JWT', 'alg': 'ed25519-nkey'}))}.{_b64(_json(claims))}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode()))}"


def decode_jwt(token: str) -> dict:
    """A JWT's claims (not verified: for reading what was minted)."""
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def creds_text(user_jwt: str, seed: bytes) -> str:
    """A ``.creds`` file's content: the user JWT and the user's seed, as ``nsc`` writes it."""
    return (f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n")


def _new_seed(prefix: int) -> bytes:
    return nkeys.encode_seed(os.urandom(32), prefix)


# -- permissions by role -------------------------------------------------------------------------

def inbox_prefix(identity: Identity) -> str:
    """The reply inbox a CITY identity must connect with (``nats.connect(inbox_prefix=…)``): its
    users may subscribe to their own inbox only, so no one reads another's replies."""
    return f"_INBOX.{identity.name}"


def feed_name(identity: Identity) -> str:
    """The one JetStream consumer an identity may create and pull: ``feed-<name>``."""
    return f"feed-{identity.name}"


def _feed(identity: Identity, events: str) -> list[str]:
    """Publish rights for the identity's own feed consumer on ``events`` (a filter), through the
    JetStream API CITY imports under :data:`JS_PREFIX`: create it with that filter, pull it, ack it."""
    name = feed_name(identity)
    return [f"{JS_PREFIX}.CONSUMER.CREATE.{STREAM}.{name}.{events}",
            f"{JS_PREFIX}.CONSUMER.MSG.NEXT.{STREAM}.{name}",
            f"$JS.ACK.{STREAM}.{name}.>"]


def permissions(identity: Identity) -> dict:
    """The NATS permissions written into ``identity``'s user JWT: ``{"pub": {"allow": […]},
    "sub": {"allow": […]}}``, or ``{}`` (no limits) for operators and services (account CORDON).

    - staff of community C: C's scoped commands ``cordon.cmd.*.*.C``, every query, C's events
      live and through its feed;
    - officer of scope S: every query, S's events live and through its feed; the scoped commands
      of its ``community`` when it has one;
    - city system: exactly its grants (``cmd:<svc>.<cmd>``: that command, unscoped or scoped;
      ``qry:<view>``; ``evt``: every event, live and through its feed);
    - gate of community C: ``cordon.cmd.checkpoint.check_passage.C`` and nothing else.

    Every CITY identity may subscribe to its own reply inbox (:func:`inbox_prefix`) only.
    """
    if identity.role in INSIDE:
        return {}
    pub: list[str] = []
    sub: list[str] = [f"{inbox_prefix(identity)}.>"]
    if identity.role == "staff":
        events = f"cordon.evt.{identity.community}.>"
        pub += [f"cordon.cmd.*.*.{identity.community}", "cordon.qry.>", *_feed(identity, events)]
        sub.append(events)
    elif identity.role == "officer":
        events = f"cordon.evt.{identity.scope}.>"
        if identity.community:
            pub.append(f"cordon.cmd.*.*.{identity.community}")
        pub += ["cordon.qry.>", *_feed(identity, events)]
        sub.append(events)
    elif identity.role == "city-system":
        for grant in identity.grants:
            kind, _, what = grant.partition(":")
            if kind == "cmd":
                pub += [f"cordon.cmd.{what}", f"cordon.cmd.{what}.>"]
            elif kind == "qry":
                pub.append(f"cordon.qry.{what}")
            elif grant == "evt":
                pub += _feed(identity, "cordon.evt.>")
                sub.append("cordon.evt.>")
    elif identity.role == "gate":
        pub.append(f"cordon.cmd.checkpoint.check_passage.{identity.community}")
    # An empty allow list is no limit at all to nats-server: a city system granted nothing would
    # publish anywhere its account reaches (a consumer of every event through the feed import).
    return {"pub": {"allow": pub} if pub else {"deny": [">"]}, "sub": {"allow": sub}}


def account_of(identity: Identity) -> str:
    """CORDON for operators and services, CITY for everyone else."""
    return CORDON if identity.role in INSIDE else CITY


# -- the accounts' exports and imports -----------------------------------------------------------

def _cordon_exports() -> list[dict]:
    js = "$JS.API.CONSUMER"
    return [
        {"name": "commands", "subject": "cordon.cmd.>", "type": "service", "response_type": "Singleton"},
        {"name": "queries", "subject": "cordon.qry.>", "type": "service", "response_type": "Singleton"},
        {"name": "events", "subject": "cordon.evt.>", "type": "stream"},
        {"name": "feed-create", "subject": f"{js}.CREATE.{STREAM}.*.cordon.evt.>", "type": "service",
         "response_type": "Singleton"},
        # a fetch is answered by as many messages as it asked for
        {"name": "feed-next", "subject": f"{js}.MSG.NEXT.{STREAM}.*", "type": "service",
         "response_type": "Stream"},
        {"name": "feed-ack", "subject": f"$JS.ACK.{STREAM}.>", "type": "service", "response_type": "Singleton"},
    ]


def _city_imports(cordon: str) -> list[dict]:
    imports = []
    for export in _cordon_exports():
        item = {"name": export["name"], "subject": export["subject"], "account": cordon, "type": export["type"]}
        if export["name"] in ("commands", "queries"):
            item["share"] = True  # the server stamps the caller's identity: Nats-Request-Info
        if export["subject"].startswith("$JS.API."):
            # Under its own name the server answers locally: "JetStream not enabled for account".
            item["local_subject"] = JS_PREFIX + export["subject"][len("$JS.API"):]
        imports.append(item)
    return imports


# -- the authority -------------------------------------------------------------------------------

class Authority:
    """The operator and account keys of one Cordon, in a directory (mode 0700, files 0600):

    ``operator.nk``, ``SYS.nk``, ``CORDON.nk``, ``CITY.nk`` (seeds), ``<ACCOUNT>.jwt`` (the latest
    account JWTs), ``admin.creds`` and ``services/<name>.creds``."""

    def __init__(self, path: Path, keys: dict[str, nkeys.KeyPair]) -> None:
        self.path = path
        self._keys = keys

    @classmethod
    def open(cls, path: str | Path) -> "Authority":
        """The authority in ``path``, its keys created on first use (idempotent)."""
        path = Path(path).absolute()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
        keys = {}
        for which, prefix in _PREFIX.items():
            seed_file = path / f"{which}.nk"
            if not seed_file.exists():
                _write_secret(seed_file, _new_seed(prefix).decode() + "\n", replace=False)
            keys[which] = nkeys.from_seed(bytearray(seed_file.read_bytes().strip()))
        return cls(path, keys)

    def public_key(self, which: str) -> str:
        """The public key of ``operator`` or an account."""
        return self._keys[which].public_key.decode()

    def operator_jwt(self) -> str:
        return encode_jwt("operator", self.public_key("operator"), OPERATOR_NAME,
                          {"system_account": self.public_key(SYS)}, self._keys["operator"])

    def mint_account(self, which: str, revoked: dict[str, int] | None = None) -> str:
        """A fresh JWT of account ``which``: limits -1, JetStream on for CORDON, its exports or
        imports, and ``revoked`` ({user public key: unix time}: user JWTs issued up to then)."""
        claims: dict = {"limits": dict(_LIMITS), "exports": [], "imports": []}
        if which == CORDON:
            claims["limits"].update(_JS_LIMITS)
            claims["exports"] = _cordon_exports()
        elif which == CITY:
            claims["imports"] = _city_imports(self.public_key(CORDON))
        if revoked:
            claims["revocations"] = {key: int(at) for key, at in revoked.items()}
        return encode_jwt("account", self.public_key(which), which, claims, self._keys["operator"])

    def account_jwt(self, which: str) -> str:
        """The account's latest JWT (the one last pushed, or minted now without revocations)."""
        stored = self.path / f"{which}.jwt"
        if not stored.exists():
            _write_secret(stored, self.mint_account(which), replace=False)
        return stored.read_text().strip()

    def server_config(self, store_dir: str | Path, jwt_dir: str | Path, host: str = "127.0.0.1",
                      port: int = 4222) -> str:
        """A whole nats-server configuration in operator mode: listening on ``host:port``,
        JetStream storing in ``store_dir``, and :meth:`operator_config`."""
        return "\n".join([f"listen: {json.dumps(f'{host}:{port}')}",
                          f"jetstream: {{ store_dir: {json.dumps(str(store_dir))} }}",
                          self.operator_config(jwt_dir)])

    def operator_config(self, jwt_dir: str | Path) -> str:
        """The operator-mode part of a nats-server configuration (each node of a cluster has it
        too): the operator, the system account, the full resolver keeping account JWTs in
        ``jwt_dir`` (updates pushed at run time survive a restart; a cluster's nodes pass them on)
        and preloaded with the latest JWT of each account."""
        preload = "\n".join(f"  {self.public_key(which)}: {self.account_jwt(which)}" for which in ACCOUNTS)
        return "\n".join([
            f"operator: {self.operator_jwt()}",
            f"system_account: {self.public_key(SYS)}",
            f'resolver: {{ type: full, dir: {json.dumps(str(jwt_dir))}, allow_delete: true, interval: "2m", '
            'timeout: "1.9s" }',
            "resolver_preload: {", preload, "}", ""])

    def probe_creds(self) -> RawCredentials:
        """A fresh operator identity's creds, in memory: what an embedded server's readiness probe
        connects with."""
        return RawCredentials(self.user_creds(Identity(name="embedded-probe", role="operator"))[1])

    def user_jwt(self, identity: Identity, public_key: str) -> str:
        """The user JWT of ``identity`` for ``public_key``: name, tags and permissions, signed by
        its account."""
        claims = {**permissions(identity), "subs": -1, "data": -1, "payload": -1, "tags": identity.tags()}
        return encode_jwt("user", public_key, identity.name, claims, self._keys[account_of(identity)])

    def user_creds(self, identity: Identity) -> tuple[str, str]:
        """A fresh user key for ``identity`` and its creds: ``(public key, .creds text)``.
        Keys are never reused: a revocation names a key."""
        seed = _new_seed(nkeys.PREFIX_BYTE_USER)
        public_key = nkeys.from_seed(bytearray(seed)).public_key.decode()
        return public_key, creds_text(self.user_jwt(identity, public_key), seed)

    def admin_creds(self) -> Path:
        """``admin.creds``: an operator identity (account CORDON), written on first use."""
        return self._creds_file(self.path / "admin.creds", Identity(name="admin", role="operator"))

    def service_creds(self, service: str) -> Path:
        """``services/<service>.creds``: the service's own identity, written on first use."""
        folder = self.path / "services"
        folder.mkdir(mode=0o700, exist_ok=True)
        return self._creds_file(folder / f"{service}.creds", Identity(name=service, role="service"))

    def _creds_file(self, path: Path, identity: Identity) -> Path:
        if not path.exists():
            _write_secret(path, self.user_creds(identity)[1], replace=False)
        return path

    def system_creds(self) -> RawCredentials:
        """A fresh SYS user's creds, in memory (pushing account JWTs)."""
        seed = _new_seed(nkeys.PREFIX_BYTE_USER)
        public_key = nkeys.from_seed(bytearray(seed)).public_key.decode()
        token = encode_jwt("user", public_key, "cordon-sys", {"subs": -1, "data": -1, "payload": -1},
                           self._keys[SYS])
        return RawCredentials(creds_text(token, seed))

    async def push_account(self, url: str, which: str = CITY, revoked: dict[str, int] | None = None,
                           timeout: float = 5.0) -> str:
        """Re-sign account ``which`` with ``revoked`` (every revoked key, {public key: unix time})
        and push it to the server at ``url`` (or a cluster's comma-separated URLs) as a SYS user (``$SYS.REQ.CLAIMS.UPDATE``): the
        server closes the revoked users' connections at once. Keeps it as the account's latest
        JWT and returns it; :class:`AuthorityError` with the server's message if refused."""
        token = self.mint_account(which, revoked)
        nc = await nats.connect(servers(url), user_credentials=self.system_creds(), connect_timeout=2,
                                allow_reconnect=False, max_reconnect_attempts=0, error_cb=_ignore)
        try:
            msg = await nc.request("$SYS.REQ.CLAIMS.UPDATE", token.encode(), timeout=timeout)
        finally:
            await nc.close()
        reply = json.loads(msg.data)
        answer = reply.get("data") or reply.get("error") or {}
        if answer.get("code") != 200:
            raise AuthorityError(f"the server refused account {which}'s JWT: "
                                 f"{answer.get('description') or answer.get('message') or reply}")
        _write_secret(self.path / f"{which}.jwt", token, replace=True)
        return token


async def _ignore(*_args) -> None:
    pass


def _write_secret(path: Path, text: str, replace: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically; unless ``replace``, a file that
    appeared meanwhile (another process opening the same authority) wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
