"""Send responses as the SMS API returns them (POST /sms/json), and a builder."""

from __future__ import annotations

# Shaped as in the SMS API reference (its example, with a second part): both parts submitted.
DOCS_TWO_PARTS = {
    "message-count": "2",
    "messages": [
        {
            "to": "447700900000",
            "message-id": "0A0000000123ABCD1",
            "status": "0",
            "remaining-balance": "3.14159265",
            "message-price": "0.03330000",
            "network": "12345",
            "client-ref": "my-personal-reference",
            "account-ref": "customer1234",
        },
        {
            "to": "447700900000",
            "message-id": "0A0000000123ABCD2",
            "status": "0",
            "remaining-balance": "3.10829265",
            "message-price": "0.03330000",
            "network": "12345",
            "client-ref": "my-personal-reference",
            "account-ref": "customer1234",
        },
    ],
}


def send(part_ids: list[str], statuses: list[str] | None = None, **extra: object) -> dict:
    statuses = statuses or ["0"] * len(part_ids)
    messages = []
    for part_id, status in zip(part_ids, statuses):
        part = {"to": "447700900000", "status": status, "client-ref": "ref-1", "network": "23410"}
        if status == "0":
            part.update({"message-id": part_id, "message-price": "0.03330000"})
        else:
            part["error-text"] = "Throttled"
        messages.append(part)
    return {"message-count": str(len(part_ids)), "messages": messages, **extra}
