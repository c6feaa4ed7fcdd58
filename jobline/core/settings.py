"""One typed settings object, read once from ``JOBLINE_*`` environment variables."""

from __future__ import annotations

import functools
import ipaddress
from ipaddress import IPv4Network, IPv6Network
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


@functools.cache
def networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated CIDRs (``10.1.0.0/16,127.0.0.1/32``); ValueError naming a bad entry."""
    parsed = []
    for entry in (part.strip() for part in value.split(",")):
        if entry:
            try:
                parsed.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not a CIDR network: {exc}") from None
    return tuple(parsed)


def url_options(url: str) -> dict[str, str]:
    """The options a connection string's query names, by lower-cased name (as MongoDB's
    driver reads them), each with its last value."""
    return {name.lower(): value for name, value in parse_qsl(urlsplit(url).query)}


class Settings(BaseSettings):
    """Everything the API, the workers and the CLI are configured by."""

    # No value is echoed in a validation error: some are secrets.
    model_config = SettingsConfigDict(
        env_prefix="JOBLINE_", extra="ignore", hide_input_in_errors=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Defaults to redis_url; RabbitMQ (amqp://) also works.
    broker_url: str | None = None
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "jobline"

    # The demo's simulated work, in seconds.
    bmi_seconds: float = Field(default=3.0, ge=0)

    # A running job holds a lease that its worker renews; a lease that runs out
    # means the worker is gone and the sweeper hands the job on.
    lease_seconds: float = Field(default=30.0, gt=0)
    # A pure job's start is written once it has run this long (or sooner, when it
    # reports progress, logs or saves a file); one that ends first is recorded
    # start and end in one write. 0 writes every start before the job runs.
    claim_delay_seconds: float = Field(default=0.5, ge=0)
    # A queued job nobody claimed for this long has its message published again.
    requeue_after_seconds: float = Field(default=120.0, gt=0)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)

    # Seconds a finished job (and its result) is kept before MongoDB removes it; 0 keeps it.
    result_ttl: int = Field(default=7 * 86400, ge=0)

    # Extra modules that register job types, comma-separated (e.g. "myteam.jobs").
    job_modules: str = ""

    # Largest request body the API accepts.
    max_body_bytes: int = Field(default=1_000_000, gt=0)

    # Job logs: what one job may store over all its attempts; past it, lines are
    # dropped and one marker line says how many.
    job_log_max_bytes: int = Field(default=1_000_000, ge=10_000)
    # Files: the largest upload (streamed into GridFS, never held whole), and how
    # long an upload no job uses is kept.
    max_file_bytes: int = Field(default=100_000_000, gt=0)
    file_ttl_seconds: int = Field(default=86400, gt=0)
    # How long the API waits for the broker or MongoDB before answering 503.
    connect_timeout_seconds: float = Field(default=2.0, gt=0)

    # Signs webhook bodies (HMAC-SHA256). Unset: a job with a callback_url is
    # refused with 422 rather than sent unsigned, so receivers can always verify.
    webhook_secret: SecretStr | None = Field(default=None, min_length=16)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Failed deliveries are retried with exponential backoff, capped at 10 minutes.
    webhook_max_retries: int = Field(default=10, ge=0, le=50)
    # Comma-separated CIDRs webhooks may reach although they are not public
    # (receivers on a private network), e.g. "10.1.0.0/16,127.0.0.1/32".
    webhook_allowed_networks: str = ""
    # How often beat looks for schedules added or removed since its last look.
    beat_max_loop_seconds: float = Field(default=5.0, gt=0, le=300)

    # Live views: where the dashboard links to Flower, and how long one event
    # stream lasts before the client is told to reconnect (each open stream
    # holds one API thread, so streams are bounded).
    flower_url: str = "http://127.0.0.1:5555/"
    stream_max_seconds: float = Field(default=300.0, gt=0)
    # How often the board reads its list again while following the stream, to
    # drop or correct what no event told it (a job removed by retention).
    board_resync_seconds: float = Field(default=30.0, gt=0, le=3600)

    # API keys: "on" refuses requests without a valid `Authorization: Bearer KEY`.
    auth: bool = True
    # How long a key lookup is cached per API process; a revoked key stops
    # working within this many seconds.
    key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Per-key (per-address when auth is off) limit in Flask-Limiter's syntax,
    # e.g. "100/second" or "1000 per minute"; empty means no limit.
    rate_limit: str = ""
    # At most this many jobs of one owner run at once across all workers; 0 means no limit.
    owner_max_running: int = Field(default=0, ge=0)
    # A submission to a queue holding more messages than this gets 503; 0 means no limit.
    max_queue_depth: int = Field(default=0, ge=0)
    # Wrong API keys one client address may send a minute; beyond, 429 until the minute ends.
    auth_failures_per_minute: int = Field(default=20, ge=1)
    # Reverse proxies in front of the API that append to X-Forwarded-For; the
    # client address (for limits and logs) is the one that many hops back.
    # 0: the address of whoever connected.
    proxy_hops: int = Field(default=0, ge=0, le=10)
    # "user:password" Flower asks for; `jobline up` makes one up when unset.
    flower_basic_auth: SecretStr | None = None
    # "json" (one JSON object a line) or "text".
    log_format: str = Field(default="json", pattern="^(json|text)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value.strip():
            from limits import parse_many

            parse_many(value)  # ValueError names what is wrong
        return value.strip()

    @field_validator("mongo_url")
    @classmethod
    def _writes_are_acknowledged(cls, value: str) -> str:
        # A 202 means the job is stored; with w=0 MongoDB acknowledges nothing.
        if url_options(value).get("w", "").strip() == "0":
            raise ValueError(
                "the MongoDB URL asks for unacknowledged writes (w=0): jobline answers "
                "202 only once a job is stored, so it needs writes MongoDB acknowledges"
            )
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        networks(value)  # ValueError names the bad entry
        return value.strip()

    @model_validator(mode="after")
    def _broker_defaults_to_redis(self) -> Settings:
        if not self.broker_url:
            self.broker_url = self.redis_url
        return self

    @property
    def webhook_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """JOBLINE_WEBHOOK_ALLOWED_NETWORKS, parsed."""
        return networks(self.webhook_allowed_networks)

    @property
    def mongo_url_options(self) -> dict[str, str]:
        """The options JOBLINE_MONGO_URL names itself, by lower-cased name."""
        return url_options(self.mongo_url)

    @property
    def job_module_list(self) -> list[str]:
        return [m.strip() for m in self.job_modules.split(",") if m.strip()]

    @property
    def broker(self) -> str:
        """The broker URL, always set after validation."""
        return self.broker_url or self.redis_url
