"""One config module: every environment variable, its name and local default.

The same names appear in .chalice/config.json and in the Lambda environment
that infra/ sets, so there is one place to look.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

PLATFORM_MODE = "PLATFORM_MODE"            # embedded | aws-local | aws
DATA_DIR = "DATA_DIR"                      # embedded: SQLite files, keyring, logs
PORT = "PORT"                              # local API port
SIMULATOR_PORT = "SIMULATOR_PORT"          # local PSP simulator port
SIMULATOR_URL = "SIMULATOR_URL"            # where the simulator connectors call
DASHBOARD_PORT = "DASHBOARD_PORT"          # local operators' dashboard port
SIMULATOR_FAULT_LOSE_REQUEST = "SIMULATOR_FAULT_LOSE_REQUEST"    # share of simulator authorizations dropped unanswered
SIMULATOR_FAULT_LOSE_RESPONSE = "SIMULATOR_FAULT_LOSE_RESPONSE"  # ... or charged but never answered
SIMULATOR_FAULT_SEED = "SIMULATOR_FAULT_SEED"                    # seed for those fault draws
PLATFORM_REGION = "PLATFORM_REGION"        # home region stamped on events
BUS_PARTITIONS = "BUS_PARTITIONS"          # partitions per topic
BATCH_SIZE = "BATCH_SIZE"                  # records per handler invocation
BATCH_WINDOW_MS = "BATCH_WINDOW_MS"        # local event source: wait this long to fill a partial batch
MAX_ATTEMPTS = "MAX_ATTEMPTS"              # deliveries before a record goes to <topic>.dlq
RETRY_BASE_MS = "RETRY_BASE_MS"            # first retry backoff (doubles, with jitter)
RETRY_MAX_MS = "RETRY_MAX_MS"              # backoff cap
PSP_TIMEOUT_S = "PSP_TIMEOUT_S"            # connector read timeout
WEBHOOK_TIMEOUT_S = "WEBHOOK_TIMEOUT_S"    # merchant webhook timeout
API_KEY_PEPPER = "API_KEY_PEPPER"          # HMAC key for hashing API keys at rest
API_KEY_PEPPER_SECRET = "API_KEY_PEPPER_SECRET"  # aws: Secrets Manager secret holding it, read at cold start
IDEMPOTENCY_TTL_S = "IDEMPOTENCY_TTL_S"    # how long API idempotency keys are kept
IDEMPOTENCY_LOCK_S = "IDEMPOTENCY_LOCK_S"  # an in-flight request's claim on its key lapses after this
UNKNOWN_CHECK_SCHEDULE_S = "UNKNOWN_CHECK_SCHEDULE_S"  # delays between PSP status checks of an unknown outcome
ACTION_CHECK_SCHEDULE_S = "ACTION_CHECK_SCHEDULE_S"  # delays between status checks of a payment waiting on 3DS
BREAKER_THRESHOLD = "BREAKER_THRESHOLD"    # consecutive PSP failures that open its circuit breaker
BREAKER_COOLDOWN_S = "BREAKER_COOLDOWN_S"  # open breaker waits this long before a half-open probe
LOG_LEVEL = "LOG_LEVEL"                  # Python log level
LOG_FORMAT = "LOG_FORMAT"                  # json (one object per line, with payment scope and trace ids) | text
TRACE_EXPORTER = "TRACE_EXPORTER"          # auto (otlp in Lambda, file locally) | file | console | otlp | memory | none
METRICS_SINK = "METRICS_SINK"              # auto (stdout EMF in Lambda, file locally) | file | stdout | memory | none
TENANTS_FILE = "TENANTS_FILE"              # declarative tenant list payctl keeps for infra/ (unset: none)
RATE_LIMIT_PER_S = "RATE_LIMIT_PER_S"      # API requests per second per tenant (token bucket refill)
RATE_LIMIT_BURST = "RATE_LIMIT_BURST"      # ... and the bucket's size: requests allowed at once
HEALTH_MAX_OUTBOX_AGE_S = "HEALTH_MAX_OUTBOX_AGE_S"  # /health is 503 when an event waits longer to be published
CONTROL_STORE = "CONTROL_STORE"            # embedded: the leases' SQLite file, shared by the regions of a laptop
CONTROL_TABLE = "CONTROL_TABLE"            # aws modes: the leases' table (multi-region strongly consistent in AWS)
CONTROL_REGION = "CONTROL_REGION"          # aws modes: the region of the control table replica to call (empty: this one)
LEASE_TTL_S = "LEASE_TTL_S"                # a home region's lease lasts this long past each renewal
LEASE_SKEW_S = "LEASE_SKEW_S"              # the clock skew allowed between regions: owners stop, takers wait, this much
TAKEOVER_REGIONS = "TAKEOVER_REGIONS"      # peer regions whose payments this region takes over when their lease lapses
FAILBACK = "FAILBACK"                      # handback: a region back from failure asks for its lease back; stay: it does not
# aws-local and aws modes (names shared by the adapters and infra/)
PAYMENTS_TABLE = "PAYMENTS_TABLE"          # DynamoDB single table
KAFKA_BOOTSTRAP_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"  # MSK / Tansu brokers, comma-separated
KAFKA_SECURITY = "KAFKA_SECURITY"          # plaintext (local) | tls | iam (MSK IAM auth over TLS)
KMS_KEY_ID = "KMS_KEY_ID"                  # platform key (multi-region in AWS) for tenant data keys
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"      # aws-local: moto server / LocalStack edge
OUTBOX_STREAM_ARN = "OUTBOX_STREAM_ARN"    # the table's stream feeding the outbox_relay Lambda

DEFAULTS: dict[str, str] = {
    PLATFORM_MODE: "embedded",
    DATA_DIR: ".data",
    PORT: "8000",
    SIMULATOR_PORT: "8100",
    SIMULATOR_URL: "",  # derived from SIMULATOR_PORT when empty
    DASHBOARD_PORT: "8200",
    SIMULATOR_FAULT_LOSE_REQUEST: "0",
    SIMULATOR_FAULT_LOSE_RESPONSE: "0",
    SIMULATOR_FAULT_SEED: "0",
    PLATFORM_REGION: "local-1",
    BUS_PARTITIONS: "4",
    BATCH_SIZE: "100",
    BATCH_WINDOW_MS: "10",
    MAX_ATTEMPTS: "5",
    RETRY_BASE_MS: "200",
    RETRY_MAX_MS: "10000",
    PSP_TIMEOUT_S: "2.0",
    WEBHOOK_TIMEOUT_S: "2.0",
    API_KEY_PEPPER: "local-development-pepper",
    API_KEY_PEPPER_SECRET: "",  # unset: API_KEY_PEPPER itself
    IDEMPOTENCY_TTL_S: str(24 * 3600),
    IDEMPOTENCY_LOCK_S: "30",
    UNKNOWN_CHECK_SCHEDULE_S: "1,2,5,15,60",
    ACTION_CHECK_SCHEDULE_S: "60,120,300,600,1800",
    BREAKER_THRESHOLD: "5",
    BREAKER_COOLDOWN_S: "30",
    LOG_LEVEL: "INFO",
    LOG_FORMAT: "json",
    TRACE_EXPORTER: "auto",
    METRICS_SINK: "auto",
    TENANTS_FILE: "",  # the payctl wrapper sets it to infra/tenants.json
    RATE_LIMIT_PER_S: "200",
    RATE_LIMIT_BURST: "1000",
    HEALTH_MAX_OUTBOX_AGE_S: "60",
    CONTROL_STORE: "",  # derived: $DATA_DIR/control.db
    CONTROL_TABLE: "payments-control",
    CONTROL_REGION: "",  # derived: the region the Lambda runs in
    LEASE_TTL_S: "10",
    LEASE_SKEW_S: "2",
    TAKEOVER_REGIONS: "",
    FAILBACK: "handback",
    PAYMENTS_TABLE: "payments-platform",
    KAFKA_BOOTSTRAP_SERVERS: "127.0.0.1:9092",
    KAFKA_SECURITY: "plaintext",
    KMS_KEY_ID: "alias/payments-platform",
    AWS_ENDPOINT_URL: "http://127.0.0.1:4566",
    OUTBOX_STREAM_ARN: "",  # derived: the table's latest stream
}

EMPTY_MEANS_NONE = frozenset({TAKEOVER_REGIONS})  # an empty default that is not derived from anything

# DynamoDB single-table layout, shared by adapters/aws/dynamodb.py and infra/.
TABLE_PK, TABLE_SK = "pk", "sk"                  # pk always begins with the tenant id
STATUS_INDEX = "by-status"                       # GSI: list payments by status, newest first
STATUS_INDEX_PK, STATUS_INDEX_SK = "gsi1pk", "gsi1sk"
TTL_ATTRIBUTE = "expires_at"                     # idempotency records expire by TTL
OUTBOX_STREAM_VIEW_TYPE = "NEW_IMAGE"            # the stream carries new outbox items whole
# Lambda event filter for the outbox_relay mapping: only new outbox items matter.
def outbox_stream_filter(region: str) -> dict[str, Any]:
    """The Lambda event filter on the table's stream: new outbox items this region wrote. A global
    table's stream in each region also carries the other regions' replicated writes, which their
    own relays publish and count (adapters/aws/dynamodb_layout.py, "Regions")."""
    return {"eventName": ["INSERT"],
            "dynamodb": {"NewImage": {"kind": {"S": ["outbox"]}, "origin": {"S": [region]}}}}

MODES = ("embedded", "aws-local", "aws")


class ConfigError(ValueError):
    pass


def _get(env: dict[str, str], name: str) -> str:
    return env.get(name) or DEFAULTS[name]


def _int(env: dict[str, str], name: str) -> int:
    try:
        return int(_get(env, name))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {env.get(name)!r}") from None


def _float(env: dict[str, str], name: str) -> float:
    try:
        return float(_get(env, name))
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {env.get(name)!r}") from None


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = _get(env, name).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _names(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in _get(env, name).split(",") if n.strip())


def _schedule(env: dict[str, str], name: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(x) for x in _get(env, name).split(","))
    except ValueError:
        steps = ()
    if not steps or any(x < 0 for x in steps):
        raise ConfigError(f"{name} must be comma-separated non-negative seconds, got {env.get(name)!r}")
    return steps


def _pepper(env: dict[str, str], mode: str, read_secret: Callable[[str], str] | None) -> bytes:
    """The API key pepper: from Secrets Manager when API_KEY_PEPPER_SECRET names a secret. In aws
    mode the public local default is refused: keys hashed under it are as good as unhashed."""
    secret_id = env.get(API_KEY_PEPPER_SECRET)
    value = (read_secret or _secret_string)(secret_id) if secret_id else _get(env, API_KEY_PEPPER)
    if mode == "aws" and value.strip() in ("", DEFAULTS[API_KEY_PEPPER]):
        raise ConfigError(f"aws mode refuses to start with the local default {API_KEY_PEPPER}: "
                          f"set {API_KEY_PEPPER_SECRET} to the Secrets Manager secret that holds the pepper")
    return value.encode()


def _secret_string(secret_id: str) -> str:
    import boto3  # only when a secret is named (aws mode); the other modes never load it here

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def _path(env: dict[str, str], name: str) -> Path:
    return Path(_get(env, name)).resolve()


def _upper(env: dict[str, str], name: str) -> str:
    return _get(env, name).upper()


def _one_of(*allowed: str) -> Callable[[dict[str, str], str], str]:
    return lambda env, name: _choice(env, name, allowed)


def _env(name: str, read: Callable[[dict[str, str], str], Any] | None = _get, **kw: Any) -> Any:
    """A Settings field read from the environment variable `name` by `read` (default: the text;
    None: from_env derives it from other values)."""
    return field(metadata={"env": name, "read": read}, **kw)


@dataclass(frozen=True)
class Settings:
    """Every setting, each declared once with the variable it comes from (Settings.from_env)."""
    mode: str = _env(PLATFORM_MODE, _one_of(*MODES))
    data_dir: Path = _env(DATA_DIR, _path)
    port: int = _env(PORT, _int)
    simulator_port: int = _env(SIMULATOR_PORT, _int)
    simulator_url: str = _env(SIMULATOR_URL)  # empty: derived from simulator_port
    region: str = _env(PLATFORM_REGION)
    partitions: int = _env(BUS_PARTITIONS, _int)
    batch_size: int = _env(BATCH_SIZE, _int)
    batch_window_ms: int = _env(BATCH_WINDOW_MS, _int)
    max_attempts: int = _env(MAX_ATTEMPTS, _int)
    retry_base_ms: int = _env(RETRY_BASE_MS, _int)
    retry_max_ms: int = _env(RETRY_MAX_MS, _int)
    psp_timeout_s: float = _env(PSP_TIMEOUT_S, _float)
    webhook_timeout_s: float = _env(WEBHOOK_TIMEOUT_S, _float)
    api_key_pepper: bytes = _env(API_KEY_PEPPER, None, repr=False)  # derived: _pepper (mode, secret)
    idempotency_ttl_s: int = _env(IDEMPOTENCY_TTL_S, _int)
    idempotency_lock_s: int = _env(IDEMPOTENCY_LOCK_S, _int)
    unknown_check_schedule_s: tuple[float, ...] = _env(UNKNOWN_CHECK_SCHEDULE_S, _schedule)
    action_check_schedule_s: tuple[float, ...] = _env(ACTION_CHECK_SCHEDULE_S, _schedule)
    breaker_threshold: int = _env(BREAKER_THRESHOLD, _int)
    breaker_cooldown_s: float = _env(BREAKER_COOLDOWN_S, _float)
    log_level: str = _env(LOG_LEVEL, _upper)
    log_format: str = _env(LOG_FORMAT, _one_of("json", "text"))
    trace_exporter: str = _env(TRACE_EXPORTER, _one_of("auto", "none", "memory", "console", "file", "otlp"))
    metrics_sink: str = _env(METRICS_SINK, _one_of("auto", "none", "memory", "stdout", "file"))
    simulator_fault_lose_request: float = _env(SIMULATOR_FAULT_LOSE_REQUEST, _float)
    simulator_fault_lose_response: float = _env(SIMULATOR_FAULT_LOSE_RESPONSE, _float)
    simulator_fault_seed: int = _env(SIMULATOR_FAULT_SEED, _int)
    rate_limit_per_s: float = _env(RATE_LIMIT_PER_S, _float)
    rate_limit_burst: int = _env(RATE_LIMIT_BURST, _int)
    dashboard_port: int = _env(DASHBOARD_PORT, _int)
    health_max_outbox_age_s: float = _env(HEALTH_MAX_OUTBOX_AGE_S, _float)
    control_store: str = _env(CONTROL_STORE)  # empty: derived from data_dir (control_path)
    control_table: str = _env(CONTROL_TABLE)
    control_region: str = _env(CONTROL_REGION)  # empty: the AWS region the process runs in
    lease_ttl_s: float = _env(LEASE_TTL_S, _float)
    lease_skew_s: float = _env(LEASE_SKEW_S, _float)
    takeover_regions: tuple[str, ...] = _env(TAKEOVER_REGIONS, _names)
    failback: str = _env(FAILBACK, _one_of("handback", "stay"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None,
                 read_secret: Callable[[str], str] | None = None) -> Settings:
        """`read_secret(secret_id) -> str` replaces the Secrets Manager call (tests)."""
        env = dict(os.environ if env is None else env)
        values = {f.name: f.metadata["read"](env, f.metadata["env"]) for f in fields(cls) if f.metadata["read"]}
        values["simulator_url"] = values["simulator_url"] or f"http://127.0.0.1:{values['simulator_port']}"
        values["api_key_pepper"] = _pepper(env, values["mode"], read_secret)
        settings = cls(**values)
        for name, value in ((BUS_PARTITIONS, settings.partitions), (BATCH_SIZE, settings.batch_size),
                            (MAX_ATTEMPTS, settings.max_attempts), (RATE_LIMIT_BURST, settings.rate_limit_burst)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if settings.batch_window_ms < 0:
            raise ConfigError(f"{BATCH_WINDOW_MS} must be 0 or more, got {settings.batch_window_ms}")
        if not settings.lease_ttl_s > 2 * settings.lease_skew_s >= 0:
            raise ConfigError(f"{LEASE_TTL_S} ({settings.lease_ttl_s:g}) must exceed twice {LEASE_SKEW_S} "
                              f"({settings.lease_skew_s:g}): an owner stops acting skew before expiry")
        if settings.region in settings.takeover_regions:
            raise ConfigError(f"{TAKEOVER_REGIONS} lists this region itself ({settings.region})")
        if not settings.rate_limit_per_s > 0:
            raise ConfigError(f"{RATE_LIMIT_PER_S} must be greater than 0, got {settings.rate_limit_per_s}")
        return settings

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def control_path(self) -> Path:
        """The leases' file: CONTROL_STORE, else beside the store (one region alone on a laptop)."""
        return Path(self.control_store).resolve() if self.control_store else self.data_dir / "control.db"

    @property
    def bus_path(self) -> Path:
        return self.data_dir / "bus.db"

    @property
    def keyring_path(self) -> Path:
        return self.data_dir / "keyring.json"
