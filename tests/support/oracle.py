"""The contract's rules written out again, independently of dlrq.core, for tests to judge dlrq by."""

from __future__ import annotations

FAILED = frozenset({"expired", "failed", "rejected"})
FINAL = FAILED | {"delivered", "unknown"}
DEDUPE_FIELDS = ("messageId", "status", "err-code", "scts", "message-timestamp")
# The Messages API's status words, as the contract maps them onto the status rules.
MESSAGES_STATUS = {"submitted": "accepted", "delivered": "delivered", "read": "delivered", "rejected": "rejected",
                   "undeliverable": "failed"}


def contract_status(part_statuses: list[str | None]) -> str:
    """A message's status from its parts' statuses (every expected part listed, None for a silent one)."""
    if any(s in FAILED for s in part_statuses):
        return "failed"
    if all(s == "delivered" for s in part_statuses):
        return "delivered"
    if all(s in FINAL for s in part_statuses):
        return "unknown"
    return "pending"


def dedupe_key(params: dict) -> tuple[str, ...]:
    """Two receipts with the same key are one receipt delivered twice: for a Messages API status
    callback (whose timestamps here are whole seconds, `...T14:00:05Z`), the same message_uuid,
    status, timestamp and error."""
    if "message_uuid" in params:
        error = params.get("error") or {}
        return (params["message_uuid"], "messages", params["status"], params["timestamp"][:19].replace("T", " "),
                str(error.get("title", "")))
    return tuple(params.get(k, "") for k in DEDUPE_FIELDS)


def history_keys(part_id: str, history: list[dict[str, str]]) -> set[tuple[str, ...]]:
    """The dedupe keys of a part's stored history (which keeps every field but messageId)."""
    return {(part_id, "messages", entry["messages-status"], entry.get("message-timestamp", ""),
             entry.get("err-code", "")) if entry.get("api") == "messages"
            else dedupe_key({**entry, "messageId": part_id}) for entry in history}


RANK = {"accepted": 1, "buffered": 2, "unknown": 3, "delivered": 4, "expired": 4, "failed": 4, "rejected": 4}


def deciding(history: list[dict[str, str]]) -> dict[str, str] | None:
    """The receipt that decides a part (in order of arrival): the highest rank; among equals the
    latest message-timestamp, then scts, then the later arrival."""
    best, best_key = None, None
    for arrival, receipt in enumerate(history):
        if receipt.get("status") not in RANK:
            continue
        key = (RANK[receipt["status"]], receipt.get("message-timestamp", ""), receipt.get("scts", ""), arrival)
        if best_key is None or key > best_key:
            best, best_key = receipt, key
    return best
