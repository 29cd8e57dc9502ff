"""Every setting dlrq reads, from `DLRQ_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
VONAGE_REST = "https://rest.nexmo.com"

# Comma-separated in the environment: DLRQ_RETRY_CODES=1,2,7
CommaList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DLRQ_", frozen=True, extra="ignore")

    # Unset means "the default server", except for `dlrq up`, which then starts its own.
    redis_url: str | None = None
    # Comma-separated host:port of Sentinels: the primary is then found through them.
    redis_sentinels: CommaList = ()
    redis_master: str = "dlrq"
    redis_sentinel_password: SecretStr | None = None
    # Acknowledge a write only once this many replicas have it (WAIT), within the timeout.
    ack_replicas: int = Field(0, ge=0)
    ack_replica_timeout: float = Field(0.5, gt=0)
    data_dir: Path = Path(".dlrq")
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    # `dlrq api`: the management routes and the console, in a process of their own (no reader
    # shares the webhook's event loop).
    api_host: str = "127.0.0.1"
    api_port: int = Field(3001, ge=0, le=65535)
    # Comma-separated CIDRs: when set, receipts are taken only from these networks (Vonage's), 403 otherwise.
    webhook_allow: CommaList = ()
    # Comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client.
    trusted_proxies: CommaList = ()
    webhook_path: str = "/webhooks/delivery-receipt"
    message_status_path: str = "/webhooks/message-status"
    ack_status: Literal[200, 204] = 204

    signature_secret: SecretStr | None = None
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "md5hash"
    signature_max_skew: int = Field(300, ge=1)
    api_key: str | None = None
    # TOML: per Vonage API key, its signature method and one or two secrets (dlrq/core/accounts.py).
    accounts_file: Path | None = None
    api_token: SecretStr | None = None
    # The web console under /console; unset means "on when DLRQ_API_TOKEN is set" (it signs in with it).
    console: bool | None = None

    dedupe_ttl: int = Field(345_600, ge=1)
    retention: int = Field(604_800, ge=1)
    receipt_timeout: int = Field(86_400, ge=1)

    # The HTTP edge's limits against clients that are slow or hostile (ingest/protocol.py).
    max_header_bytes: int = Field(16_384, ge=1024)
    max_url_bytes: int = Field(8192, ge=256)
    header_timeout: float = Field(5.0, gt=0)
    body_timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(4096, ge=1)
    shutdown_grace: float = Field(10.0, gt=0)
    ingest_processes: int = Field(1, ge=1, le=64)

    queue: str = "dlrq"
    batch_max_size: int = Field(256, ge=1, le=10_000)
    batch_max_wait_ms: float = Field(0.0, ge=0, le=1000)
    store_timeout: float = Field(1.0, gt=0)
    # The ingest stops acknowledging (503) once Redis' memory is over this share of its maxmemory, so
    # that the workers keep room to apply what was acknowledged (0 turns it off; no maxmemory, no mark).
    memory_high_water: float = Field(0.9, ge=0, lt=1)
    retry_after: int = Field(5, ge=1)
    job_timeout: int = Field(30, ge=1)
    maintenance_interval: int = Field(15, ge=1)
    part_max_receipts: int = Field(100, ge=2)
    part_max_bytes: int = Field(65_536, ge=4096)
    # Hourly analytics kept this long (0 turns them off); distinct client-refs, network codes and
    # err-codes counted by name per hour (the rest as "(other)": anyone can send receipts).
    analytics_retention: int = Field(2_592_000, ge=0)
    analytics_max_refs: int = Field(1000, ge=1)
    analytics_max_networks: int = Field(1000, ge=1)
    analytics_max_err_codes: int = Field(100, ge=1)
    # A `network` label on the Prometheus outcome and time-to-receipt series (one series per network).
    metrics_network_label: bool = False
    record_max_batches: int = Field(100_000, ge=0)
    record_max_age: int = Field(86_400, ge=0)

    log_level: str = "INFO"
    # auto: readable text on a terminal, one JSON object a line otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Phone numbers are masked in logs unless this is set (for debugging).
    log_phone_numbers: bool = False

    # Handlers: built-in names (log, webhook, vonage) or dotted paths to callables.
    alert_handlers: CommaList = ("log",)
    retry_handlers: CommaList = ("log",)
    handler_timeout: int = Field(60, ge=1)
    handler_retry_backoff: CommaList = ("10", "60", "300", "900", "3600")
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = Field(5.0, gt=0)
    vonage_api_key: str | None = None
    vonage_api_secret: SecretStr | None = None
    vonage_base_url: str = VONAGE_REST

    retry_codes: CommaList = ("1", "2", "7", "8", "12", "16", "99")
    retry_max_attempts: int = Field(3, ge=1)
    retry_backoff: CommaList = ("300", "1800", "7200")

    failure_rate_window: int = Field(300, ge=10)
    failure_rate_min_volume: int = Field(20, ge=1)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    failure_rate_cooldown: int = Field(900, ge=1)

    @field_validator("alert_handlers", "retry_handlers", "retry_codes", "retry_backoff", "handler_retry_backoff",
                     "redis_sentinels", "webhook_allow", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{address!r}: sentinels are host:port, comma-separated")
        return value

    @field_validator("webhook_allow", "trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network: comma-separated CIDRs, e.g. 10.0.0.0/8") from exc
        return value

    @model_validator(mode="after")
    def _paths_differ(self) -> Settings:
        if self.webhook_path == self.message_status_path:
            raise ValueError("DLRQ_WEBHOOK_PATH and DLRQ_MESSAGE_STATUS_PATH must differ")
        return self

    @model_validator(mode="after")
    def _wait_fits(self) -> Settings:
        if self.ack_replicas and self.ack_replica_timeout >= self.store_timeout:
            raise ValueError("DLRQ_ACK_REPLICA_TIMEOUT must be shorter than DLRQ_STORE_TIMEOUT, "
                             "which bounds the whole write")
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(address.rpartition(":")[0].strip("[]"), int(address.rpartition(":")[2]))
                for address in self.redis_sentinels]

    @field_validator("api_token", "signature_secret", "api_key", "webhook_secret", "vonage_api_secret",
                     "redis_sentinel_password", "accounts_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """DLRQ_API_TOKEN= (set, but empty) must not mean "the empty token": it means no token."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retry_backoff", "handler_retry_backoff")
    @classmethod
    def _seconds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not all(v.isdigit() for v in value):
            raise ValueError("a comma-separated list of whole seconds, e.g. 10,60,300")
        return value

    @property
    def handler_retry_intervals(self) -> list[int]:
        """RQ's retry intervals of a handler call: one retry per step."""
        return [int(s) for s in self.handler_retry_backoff]

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def record_ttl(self) -> int:
        """A part's history is its resend filter, so it must outlive the dedupe window."""
        return max(self.retention, self.dedupe_ttl)

    @property
    def handler_queue(self) -> str:
        """Handler calls wait in their own queue, so that a slow handler never holds up receipts."""
        return f"{self.queue}-handlers"

    @property
    def queues(self) -> tuple[str, str]:
        """Receipt batches first, then handler calls."""
        return (self.queue, self.handler_queue)

    def backoff(self, attempt: int) -> int:
        """Seconds to wait before resending after failed attempt `attempt` (the last step repeats)."""
        steps = [int(s) for s in self.retry_backoff]
        return steps[min(attempt, len(steps)) - 1]

    @property
    def message_ttl(self) -> int:
        """A registration must outlive its receipt deadline, then be kept as long as its parts."""
        return self.receipt_timeout + self.record_ttl


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
