"""Every setting dlrq reads, from `DLRQ_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DLRQ_", frozen=True, extra="ignore")

    # Unset means "the default server", except for `dlrq up`, which then starts its own.
    redis_url: str | None = None
    data_dir: Path = Path(".dlrq")
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    webhook_path: str = "/webhooks/delivery-receipt"
    ack_status: Literal[200, 204] = 204

    signature_secret: SecretStr | None = None
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "md5hash"
    signature_max_skew: int = Field(300, ge=1)
    api_key: str | None = None
    api_token: SecretStr | None = None

    dedupe_ttl: int = Field(345_600, ge=1)
    retention: int = Field(604_800, ge=1)
    receipt_timeout: int = Field(86_400, ge=1)

    queue: str = "dlrq"
    batch_max_size: int = Field(256, ge=1, le=10_000)
    batch_max_wait_ms: float = Field(0.0, ge=0, le=1000)
    store_timeout: float = Field(1.0, gt=0)
    retry_after: int = Field(5, ge=1)
    job_timeout: int = Field(30, ge=1)
    maintenance_interval: int = Field(15, ge=1)

    log_level: str = "INFO"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def record_ttl(self) -> int:
        """A part's history is its resend filter, so it must outlive the dedupe window."""
        return max(self.retention, self.dedupe_ttl)

    @property
    def message_ttl(self) -> int:
        """A registration must outlive its receipt deadline, then be kept as long as its parts."""
        return self.receipt_timeout + self.record_ttl


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
