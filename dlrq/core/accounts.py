"""Vonage accounts: which secrets verify a webhook, chosen by the API key it names.

Pure: the accounts file's text in, accounts out. With `DLRQ_ACCOUNTS_FILE` each API key has its
own signature method and one or two secrets (two while a secret is being rotated); without it,
`DLRQ_SIGNATURE_SECRET`, `DLRQ_SIGNATURE_METHOD` and `DLRQ_API_KEY` describe the one account.

    [accounts.7c47b66b]
    signature_method = "sha256"                 # SMS receipts; Messages API callbacks are always HS256 JWTs
    signature_secrets = ["new secret", "old"]   # one, or two during a rotation
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
MAX_SECRETS = 2


class UnknownAccount(LookupError):
    """The webhook names no configured account."""


@dataclass(frozen=True)
class Account:
    api_key: str | None  # None: the one account of the settings, whatever key a webhook names
    method: str
    secrets: tuple[str, ...] = field(repr=False)  # none: webhooks need not be signed


@dataclass(frozen=True)
class Accounts:
    by_key: Mapping[str, Account]
    single: Account | None = None  # the settings' shorthand, when there is no accounts file

    def select(self, api_key: str | None) -> Account:
        """The account a webhook's API key names; UnknownAccount if there is none."""
        if self.single is not None:
            if self.single.api_key is not None and api_key != self.single.api_key:
                raise UnknownAccount("api-key does not match this account")
            return self.single
        if not api_key:
            raise UnknownAccount("no api-key: DLRQ_ACCOUNTS_FILE is set, so webhooks must name their account")
        account = self.by_key.get(api_key)
        if account is None:
            raise UnknownAccount(f"api-key {api_key[:32]!r} is not in DLRQ_ACCOUNTS_FILE")
        return account

    @property
    def signed(self) -> bool:
        """Whether every webhook must be signed."""
        accounts = [self.single] if self.single is not None else list(self.by_key.values())
        return any(account.secrets for account in accounts)


def single(secret: str | None, method: str, api_key: str | None) -> Accounts:
    return Accounts({}, Account(api_key, method, (secret,) if secret else ()))


def parse_accounts(text: str) -> Accounts:
    """An accounts file's accounts; ValueError saying what is wrong and where."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from exc
    tables = doc.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ValueError("no [accounts.<api key>] table")
    unknown = set(doc) - {"accounts"}
    if unknown:
        raise ValueError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    accounts = {}
    for api_key, table in tables.items():
        where = f"[accounts.{api_key}]"
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table")
        extra = set(table) - {"signature_method", "signature_secrets"}
        if extra:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        method = table.get("signature_method", "md5hash")
        if method not in SIGNATURE_METHODS:
            raise ValueError(f"{where}: signature_method {method!r} is not one of {', '.join(SIGNATURE_METHODS)}")
        secrets = table.get("signature_secrets")
        if (not isinstance(secrets, list) or not 1 <= len(secrets) <= MAX_SECRETS
                or not all(isinstance(s, str) and s.strip() for s in secrets)):
            raise ValueError(f"{where}: signature_secrets must list one or two non-empty secrets")
        accounts[api_key] = Account(api_key, method, tuple(secrets))
    return Accounts(accounts)
