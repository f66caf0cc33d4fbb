"""Configuration from the environment.

``CORDON_NATS_URL`` and ``CORDON_PG_DSN`` point at running servers (containers, clusters); when
absent, ``cordon up`` starts embedded ones under ``CORDON_DATA_DIR``. ``CORDON_NATS_CREDS`` is the
path of the ``.creds`` file a process connects to NATS with (``cordon up`` gives each service its own).
``CORDON_PG_PASSWORD_FILE`` holds the password of a ``CORDON_PG_DSN`` written without one, so that
deployments keep the DSN in plain configuration and the password in a secret file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "Asia/Shanghai"
#: Where ``cordon service`` serves /metrics, /livez and /readyz unless told (``CORDON_METRICS_PORT``).
DEFAULT_METRICS_PORT = 9300


def city_zone(environ: Mapping[str, str] | None = None) -> ZoneInfo:
    """The city's time zone (``CORDON_TIMEZONE``, default Asia/Shanghai): what "today" means."""
    value = (environ if environ is not None else os.environ).get("CORDON_TIMEZONE") or DEFAULT_ZONE
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SystemExit(f"CORDON_TIMEZONE={value!r} is not a time zone (e.g. Asia/Shanghai)") from None


def with_password_file(dsn: str, password_file: str | None) -> str:
    """``dsn`` with the password read from ``password_file`` (``CORDON_PG_PASSWORD_FILE``).

    The file is the one PostgreSQL's own image reads as ``POSTGRES_PASSWORD_FILE`` (one secret for
    both; trailing newlines dropped, as that image does), so the DSN holds no secret and can sit in
    a compose file or a ConfigMap. A DSN that already has a password keeps it: ``cordon up`` hands
    its children the whole DSN. SystemExit if the file cannot be read, is empty, or the DSN names
    no user.
    """
    parts = urlsplit(dsn)
    if not password_file or parts.password is not None:
        return dsn
    try:
        password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SystemExit(f"CORDON_PG_PASSWORD_FILE={password_file!r} cannot be read: {exc.strerror}") from None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not password or not at or not userinfo:
        raise SystemExit(f"CORDON_PG_PASSWORD_FILE needs a non-empty file and a CORDON_PG_DSN with a user "
                         f"(postgresql://cordon@host:5432/cordon); got {'an empty file' if not password else dsn}")
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{quote(password, safe='')}@{hostport}"))


def shown_dsn(dsn: str) -> str:
    """``dsn`` fit to print: its password, if any, replaced by ``***``."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}"))


#: The help of the ``--creds`` option of every ``cordon`` command that connects to NATS.
CREDS_HELP = ("the .creds file to connect to NATS with (default: CORDON_NATS_CREDS, else "
              "<data dir>/auth/admin.creds when it exists: the one `cordon up` writes)")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Settings shared by every service; build it with :meth:`from_env`."""

    nats_url: str | None = None
    #: The .creds file (user JWT and seed) this process connects to NATS with; None: no credentials.
    nats_creds: str | None = None
    pg_dsn: str | None = None
    data_dir: Path = Path(".cordon")
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    #: Most commands committed in one PostgreSQL transaction (group commit).
    batch_max: int = 256
    #: Largest command payload accepted, bytes.
    max_payload: int = 64 * 1024
    #: JetStream duplicate window, seconds: the relay's crash-between-publish-and-delete guard.
    dedupe_window_s: float = 20 * 60
    #: Attempts before a consumer parks a failing message as a dead letter.
    park_after: int = 5
    #: PostgreSQL connections per service process: the writer and its lanes, the relay, each
    #: consumer and policy, queries. Quarantine alone holds up to 9 during a sweep.
    pg_pool_max: int = 16
    #: Replicas of the CORDON stream when it is first created: 3 on a 3-node NATS cluster.
    stream_replicas: int = 1
    #: How far a caller's occurred_at may lie ahead of the service's clock, seconds.
    clock_skew_s: float = 300.0
    #: How many days a caller's occurred_at may lie behind the service's clock (0: any).
    backdate_days: float = 30.0
    #: HTTP port of /metrics, /livez and /readyz (0: none). 0 here, so that services a test starts
    #: in one process do not contend for a port; ``from_env`` (``cordon service``) makes it 9300.
    metrics_port: int = 0
    #: Address the metrics port listens on: every interface, for Prometheus and the kubelet in a
    #: container; ``cordon up`` makes it 127.0.0.1.
    metrics_host: str = "0.0.0.0"
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Config":
        env = dict(os.environ if env is None else env)
        values: dict = {"metrics_port": DEFAULT_METRICS_PORT}
        if env.get("CORDON_METRICS_HOST"):
            values["metrics_host"] = env["CORDON_METRICS_HOST"]
        if env.get("CORDON_NATS_URL"):
            values["nats_url"] = env["CORDON_NATS_URL"]
        if env.get("CORDON_NATS_CREDS"):
            values["nats_creds"] = env["CORDON_NATS_CREDS"]
        if env.get("CORDON_PG_DSN"):
            values["pg_dsn"] = with_password_file(env["CORDON_PG_DSN"], env.get("CORDON_PG_PASSWORD_FILE"))
        if env.get("CORDON_DATA_DIR"):
            values["data_dir"] = Path(env["CORDON_DATA_DIR"])
        for key, name, conv in (
            ("log_format", "CORDON_LOG_FORMAT", str),
            ("log_level", "CORDON_LOG_LEVEL", str),
            ("batch_max", "CORDON_BATCH_MAX", int),
            ("max_payload", "CORDON_MAX_PAYLOAD", int),
            ("dedupe_window_s", "CORDON_DEDUPE_WINDOW_S", float),
            ("park_after", "CORDON_PARK_AFTER", int),
            ("pg_pool_max", "CORDON_PG_POOL_MAX", int),
            ("stream_replicas", "CORDON_STREAM_REPLICAS", int),
            ("clock_skew_s", "CORDON_CLOCK_SKEW_S", float),
            ("backdate_days", "CORDON_BACKDATE_DAYS", float),
            ("metrics_port", "CORDON_METRICS_PORT", int),
        ):
            if env.get(name) not in (None, ""):
                try:
                    values[key] = conv(env[name])
                except ValueError:
                    raise SystemExit(f"{name}={env[name]!r} is not a valid {conv.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def client_creds(self, given: str | None = None) -> str | None:
        """The credentials a ``cordon`` command connects with: ``given`` (``--creds``), else
        ``CORDON_NATS_CREDS``, else the operators' ``<data dir>/auth/admin.creds`` when it exists."""
        if given or self.nats_creds:
            return given or self.nats_creds
        admin = self.data_dir / "auth" / "admin.creds"
        return str(admin) if admin.exists() else None
