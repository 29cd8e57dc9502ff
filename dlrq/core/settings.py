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

    # Where dlrq's state lives.
    redis_url: str | None = Field(None, description="Redis/Valkey holding the queue and state (`rediss://` and "
                                  "passwords work); unset, `redis://127.0.0.1:6379/0`, and `dlrq up` starts its "
                                  "own embedded server")
    redis_sentinels: CommaList = Field((), description="comma-separated `host:port` of Sentinels: the primary is "
                                       "found through them, and again after a failover (DLRQ_REDIS_URL still gives "
                                       "password, database and TLS)")
    redis_master: str = Field("dlrq", description="the primary's name in Sentinel")
    redis_sentinel_password: SecretStr | None = Field(None, description="the sentinels' own password, if any")
    ack_replicas: int = Field(0, ge=0, description="a receipt (or registration) is acknowledged only once this many "
                              "replicas have it (`WAIT`); fewer in time: 503")
    ack_replica_timeout: float = Field(0.5, gt=0, description="seconds to wait for those replicas (less than "
                                       "DLRQ_STORE_TIMEOUT)")
    data_dir: Path = Field(Path(".dlrq"), description="where `dlrq up`'s embedded server keeps its append-only file")

    # Where the HTTP processes listen, and what they take.
    host: str = Field("127.0.0.1", description="where the ingest listens (the webhooks, POST /messages)")
    port: int = Field(3000, ge=0, le=65535, description="the ingest's port")
    api_host: str = Field("127.0.0.1", description="where `dlrq api` listens (messages, analytics, metrics, console)")
    api_port: int = Field(3001, ge=0, le=65535, description="`dlrq api`'s port")
    webhook_allow: CommaList = Field((), description="comma-separated CIDRs: when set, receipts are taken only from "
                                     "these networks (Vonage's), 403 otherwise")
    trusted_proxies: CommaList = Field((), description="comma-separated CIDRs of reverse proxies whose "
                                       "X-Forwarded-For names the client (for DLRQ_WEBHOOK_ALLOW and the limit on "
                                       "wrong tokens)")
    webhook_path: str = Field("/webhooks/delivery-receipt", description="the SMS API's receipt endpoint")
    message_status_path: str = Field("/webhooks/message-status", description="the Messages API's status endpoint")
    ack_status: Literal[200, 204] = Field(204, description="the status of an acknowledgement (empty body)")

    # Who may send what.
    signature_secret: SecretStr | None = Field(None, description="when set, every receipt needs a valid `sig` and a "
                                               "recent `timestamp`, and every Messages API status a valid JWT")
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = Field(
        "md5hash", description="`md5hash`, or HMAC `md5`, `sha1`, `sha256`, `sha512`")
    signature_max_skew: int = Field(300, ge=1, description="seconds a signed `timestamp` (or a JWT's `iat`) may be "
                                    "from now")
    api_key: str | None = Field(None, description="when set, receipts with another `api-key` (JWTs with another "
                                "`api_key`) are refused")
    accounts_file: Path | None = Field(None, description="TOML: per Vonage API key, its signature method and one or "
                                       "two secrets; replaces the three settings above")
    api_token: SecretStr | None = Field(None, description="when set, every management route needs `Authorization: "
                                        "Bearer <token>`; unset while listening beyond loopback, they answer 401")
    console: bool | None = Field(None, description="the web console under /console of `dlrq api`; unset means on "
                                 "when DLRQ_API_TOKEN is set (it signs in with it)")

    # How long what is kept.
    dedupe_ttl: int = Field(345_600, ge=1, description="seconds an identical receipt is recognised as a resend, at "
                            "least")
    retention: int = Field(604_800, ge=1, description="seconds a part is kept after its last receipt (never less "
                           "than DLRQ_DEDUPE_TTL)")
    receipt_timeout: int = Field(86_400, ge=1, description="a registered part with no final receipt this many "
                                 "seconds after its registration raises `receipt_missing`")

    # The HTTP edge's limits against clients that are slow or hostile (ingest/protocol.py).
    max_header_bytes: int = Field(16_384, ge=1024, description="longest request line and headers: beyond, 431")
    max_url_bytes: int = Field(8192, ge=256, description="longest request line: beyond, 414")
    header_timeout: float = Field(5.0, gt=0, description="seconds for a request's head to arrive: beyond, 408")
    body_timeout: float = Field(10.0, gt=0, description="seconds for a request's body to arrive after its head: "
                                "beyond, 408")
    max_connections: int = Field(4096, ge=1, description="open connections a process takes (and never above its "
                                 "open-file limit, less 64): beyond, 503 and closed")
    shutdown_grace: float = Field(10.0, gt=0, description="seconds a stopping ingest or api waits for unfinished "
                                  "requests")
    ingest_processes: int = Field(1, ge=1, le=64, description="processes serving the ingest's port, each with its "
                                  "own group commit")

    # The queue and its batches.
    queue: str = Field("dlrq", description="the RQ queue of receipt batches (handler calls: `<queue>-handlers`)")
    batch_max_size: int = Field(256, ge=1, le=10_000, description="most receipts in one stored batch (one RQ job)")
    batch_max_wait_ms: float = Field(0.0, ge=0, le=1000, description="extra milliseconds a batch waits for more "
                                     "receipts before it is written (a busy ingest batches by itself)")
    store_timeout: float = Field(1.0, gt=0, description="seconds before a write (or a connection) counts as failed: "
                                 "503")
    memory_high_water: float = Field(0.9, ge=0, lt=1, description="share of Redis' maxmemory over which the ingest "
                                     "answers 503 (until 0.05 under it), so that what was acknowledged can still "
                                     "be applied; from 0.05 under it the workers shed the oldest of the record; "
                                     "0 turns both off")
    retry_after: int = Field(5, ge=1, description="the `Retry-After` of a 503")
    job_timeout: int = Field(30, ge=1, description="seconds a batch may run; one running this + 5 s is taken for "
                             "abandoned (set it on the ingest, which gives it to each batch)")
    maintenance_interval: int = Field(15, ge=1, description="seconds between a worker's looks for dead workers' jobs")
    part_max_receipts: int = Field(100, ge=2, description="receipts a part keeps that do not change its status "
                                   "(the rest are dropped, counted); one that changes it is always kept, up to "
                                   "DLRQ_PART_MAX_BYTES")
    part_max_bytes: int = Field(65_536, ge=4096, description="bytes of one part's record at most (receipts that do "
                                "not change its status: half of it)")

    # Delivery analytics and metrics.
    analytics_retention: int = Field(2_592_000, ge=0, description="seconds hourly analytics are kept (0 turns them "
                                     "off)")
    analytics_max_refs: int = Field(1000, ge=1, description="client-refs counted by name in an hour; the rest as "
                                    "`(other)`")
    analytics_max_networks: int = Field(1000, ge=1, description="network codes counted by name in an hour (and in "
                                        "the Prometheus series); the rest as `(other)`")
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$", description="the ISO 4217 code of the account's prices "
                          "(Vonage prices in the account's currency), shown beside every cost")
    analytics_max_err_codes: int = Field(100, ge=1, description="err-codes counted by name in an hour; the rest as "
                                         "`(other)`")
    metrics_network_label: bool = Field(False, description="a `network` label on the outcome and time-to-receipt "
                                        "series of /metrics (one series per network)")
    record_max_batches: int = Field(100_000, ge=0, description="most batches kept in the record of accepted "
                                    "receipts (0 turns recording off)")
    record_max_age: int = Field(86_400, ge=0, description="seconds a batch is kept in the record (0 turns recording "
                                "off)")

    # Logs.
    log_level: str = Field("INFO", description="`DEBUG` logs each receipt on both sides with its request id")
    log_format: Literal["auto", "json", "text"] = Field("auto", description="`json` (one object a line), `text`, or "
                                                        "`auto`: text on a terminal, JSON otherwise")
    log_phone_numbers: bool = Field(False, description="phone numbers are masked in logs and pages unless this is "
                                    "true")

    # Handlers: built-in names (log, webhook, vonage) or dotted paths to callables.
    alert_handlers: CommaList = Field(("log",), description="handlers of the alert events: `log`, `webhook`, or "
                                      "dotted paths to callables (`package.module:function`)")
    retry_handlers: CommaList = Field(("log",), description="the same for `retry` events; `vonage` resends through "
                                      "the SMS API")
    handler_timeout: int = Field(60, ge=1, description="seconds a handler call may run")
    handler_retry_backoff: CommaList = Field(("10", "60", "300", "900", "3600"), description="seconds before each "
                                             "retry of a failed handler call (then it waits in failed work)")
    webhook_url: str | None = Field(None, description="where the `webhook` handler POSTs events")
    webhook_secret: SecretStr | None = Field(None, description="the key of the `webhook` handler's "
                                             "`X-Dlrq-Signature: sha256=<HMAC of the body>`")
    webhook_timeout: float = Field(5.0, gt=0, description="seconds for the `webhook` and `vonage` handlers' HTTP "
                                   "calls")
    vonage_api_key: str | None = Field(None, description="the `vonage` handler's API key")
    vonage_api_secret: SecretStr | None = Field(None, description="the `vonage` handler's API secret")
    vonage_base_url: str = Field(VONAGE_REST, description="the SMS API the `vonage` handler resends through "
                                 "(`POST {base}/sms/json`)")

    retry_codes: CommaList = Field(("1", "2", "7", "8", "12", "16", "99"), description="err-codes worth a resend "
                                   "(temporary); any other failure is permanent")
    retry_max_attempts: int = Field(3, ge=1, description="attempts in all, the first send included")
    retry_backoff: CommaList = Field(("300", "1800", "7200"), description="seconds before resending after attempt "
                                     "1, 2, 3... (the last repeats)")

    failure_rate_window: int = Field(300, ge=10, description="seconds of the sliding window (10 s buckets) of each "
                                     "network's failed share")
    failure_rate_min_volume: int = Field(20, ge=1, description="final receipts a network needs in the window before "
                                         "its share counts")
    failure_rate_threshold: float = Field(0.5, gt=0, le=1, description="failed share that raises `failure_rate`")
    failure_rate_cooldown: int = Field(900, ge=1, description="seconds after a `failure_rate` event before the same "
                                       "network can raise another")

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
    def _handlers_have_what_they_need(self) -> Settings:
        """Refused at start, not at the first event an hour later."""
        chosen = {*self.alert_handlers, *self.retry_handlers}
        if "webhook" in chosen and (not self.webhook_url or self.webhook_secret is None):
            raise ValueError("the webhook handler needs DLRQ_WEBHOOK_URL and DLRQ_WEBHOOK_SECRET")
        if "vonage" in chosen and (not self.vonage_api_key or self.vonage_api_secret is None):
            raise ValueError("the vonage handler needs DLRQ_VONAGE_API_KEY and DLRQ_VONAGE_API_SECRET")
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
