"""What Vonage will send in a fault run, and what dlrq must end with, by construction."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tests.support.oracle import FAILED, MESSAGES_STATUS, contract_status
from tests.support.receipts import receipt

TEMPORARY, PERMANENT = "2", "3"  # in and out of the default DLRQ_RETRY_CODES
MESSAGES_SHARE = 0.15  # of single-part messages, sent through the Messages API (status callbacks)
MESSAGES_ERRORS = ("1320", "1360")  # not in DLRQ_RETRY_CODES: a permanent failure


@dataclass(frozen=True)
class Scale:
    duration: float  # seconds of load; the faults happen inside it
    rate: float  # receipts a second, resends not counted
    workers: int
    worker_kill_every: float
    drain_timeout: float


SHORT = Scale(duration=60, rate=120, workers=3, worker_kill_every=8, drain_timeout=240)
FULL = Scale(duration=240, rate=200, workers=4, worker_kill_every=6, drain_timeout=300)
# The failover edition waits for the group to heal (about 10 s) before each of its five faults.
FAILOVER_SHORT = Scale(duration=120, rate=60, workers=3, worker_kill_every=0, drain_timeout=240)
FAILOVER_FULL = Scale(duration=300, rate=200, workers=3, worker_kill_every=0, drain_timeout=300)


@dataclass
class Plan:
    """What Vonage will send, and what dlrq must end with, by construction."""

    # (when, params): an SMS receipt's parameters, or a Messages API status callback (it has message_uuid)
    receipts: list[tuple[float, dict]] = field(default_factory=list)
    sends: list[tuple[float, dict]] = field(default_factory=list)  # (when, send response) of multi-part messages
    expected_status: dict[str, str] = field(default_factory=dict)  # logical id -> status
    expected_events: set[str] = field(default_factory=set)
    # (when, params) a hostile sender adds: receipts no worker could apply, which the ingest must refuse
    # (4xx), and floods of forged, non-deciding receipts at a few victims, which must change no outcome.
    poison: list[tuple[float, dict]] = field(default_factory=list)
    forged: list[tuple[float, dict]] = field(default_factory=list)


# What a poison receipt holds (each refused at the door: a worker could not apply it, or it would
# outrank every genuine receipt), and how many forged receipts each victim part gets.
POISON = ({"price": "Infinity"}, {"price": "NaN"}, {"price": "1e30"}, {"message-timestamp": "9999-12-31 23:59:59"},
          {"err-code": "x"}, {"messageId": "with/slash"})
POISON_SHARE = 0.005
VICTIMS = 8
FORGED_EACH = 150


def build_plan(scale: Scale, seed: int) -> Plan:
    """Messages of 1-3 parts; receipts out of order, some parts silent (networks that send no DLR),
    some receipts sent twice anyway; failures only on a message's first part, so that each failed
    message raises exactly one event whatever the order of receipts and registration."""
    rng = random.Random(seed)
    plan = Plan()
    total = int(scale.duration * scale.rate)
    m = 0
    while len(plan.receipts) < total:
        ids = [f"F{seed:04d}M{m:06d}P{p}" for p in range(rng.choices([1, 2, 3], [70, 20, 10])[0])]
        m += 1
        if len(ids) == 1 and rng.random() < MESSAGES_SHARE:
            message_statuses(plan, rng, f"f{seed:04d}m{m:06d}-0000-4000-8000-messagesapi", scale)
            continue
        start = rng.uniform(0, scale.duration * 0.9)
        statuses: list[str | None] = []
        for index, part_id in enumerate(ids):
            chain = [("accepted", "0")] if rng.random() < 0.6 else []
            if rng.random() < 0.1:
                chain.append(("buffered", "0"))
            final: tuple[str, str] | None = rng.choices(
                [("delivered", "0"), ("unknown", "1"), None], [94, 3, 3])[0]
            if index == 0 and rng.random() < 0.08:
                final = (rng.choice(sorted(FAILED)), rng.choice([TEMPORARY, PERMANENT]))
            if final is None and not chain and len(ids) == 1:
                final = ("delivered", "0")  # an unregistered message exists only through its receipts
            if final:
                chain.append(final)
                if index == 0 and final[0] in FAILED:
                    kind = "retry" if final[1] == TEMPORARY else "permanent_failure"
                    plan.expected_events.add(f"{kind}:{ids[0]}:1")
            statuses.append(final[0] if final else (chain[-1][0] if chain else None))
            times = sorted(start + rng.uniform(0, 3) for _ in chain)
            if rng.random() < 0.2:
                times.reverse()  # the final receipt first, then the early ones
            for (status, code), at in zip(chain, times):
                second = {"accepted": 1, "buffered": 2}.get(status, 5)
                params = receipt(part_id, status, second, code, **{"network-code": rng.choice(["23410", "23415"])})
                plan.receipts.append((at, params))
                if rng.random() < 0.03:
                    plan.receipts.append((at + rng.uniform(0, 2), params))  # Vonage sends it again anyway
        if len(ids) > 1:
            at = start - 1 if rng.random() < 0.5 else start + 4
            parts = [{"to": "447700900000", "message-id": i, "status": "0", "message-price": "0.03330000",
                      "network": "23410", "client-ref": f"ref-{ids[0]}"} for i in ids]
            plan.sends.append((max(0.0, at), {"message-count": str(len(ids)), "messages": parts}))
        plan.expected_status[ids[0]] = contract_status(statuses)
    plan.receipts.sort(key=lambda item: item[0])
    hostile(plan, rng, scale, seed)
    return plan


def hostile(plan: Plan, rng: random.Random, scale: Scale, seed: int) -> None:
    """Poison receipts spread over the run, and forged `accepted` receipts (distinct scts: not resends)
    flooding a few victim parts that have receipts of their own; none may change what dlrq ends with."""
    for n in range(int(len(plan.receipts) * POISON_SHARE)):
        params = {**receipt(f"F{seed:04d}POISON{n:04d}", "delivered", 5), **POISON[n % len(POISON)]}
        plan.poison.append((rng.uniform(0, scale.duration * 0.95), params))
    sms = [(at, p) for at, p in plan.receipts if "messageId" in p and p["status"] != "accepted"]
    for at, genuine in rng.sample(sms, min(VICTIMS, len(sms))):
        for i in range(FORGED_EACH):
            forged = receipt(genuine["messageId"], "accepted", 1, scts=f"{1901011400 + i}")
            plan.forged.append((max(0.0, at - rng.uniform(0, 2)), forged))
    plan.poison.sort(key=lambda item: item[0])
    plan.forged.sort(key=lambda item: item[0])




def message_statuses(plan: Plan, rng: random.Random, uuid: str, scale: Scale) -> None:
    """A message sent through the Messages API: its status callbacks, out of order too, some sent twice."""
    start = rng.uniform(0, scale.duration * 0.9)
    chain = [("submitted", None)] if rng.random() < 0.6 else []
    if rng.random() < 0.08:
        chain.append((rng.choice(["rejected", "undeliverable"]), rng.choice(MESSAGES_ERRORS)))
        plan.expected_events.add(f"permanent_failure:{uuid}:1")
    else:
        chain.append(("delivered", None))
        if rng.random() < 0.1:
            chain.append(("read", None))
    times = sorted(start + rng.uniform(0, 3) for _ in chain)
    if rng.random() < 0.2:
        times.reverse()
    for second, ((status, error), at) in enumerate(zip(chain, times), 1):
        doc = {"message_uuid": uuid, "to": "447700900000", "from": "ACME", "channel": "sms", "status": status,
               "timestamp": f"2020-01-01T14:00:{second:02d}Z", "usage": {"currency": "EUR", "price": "0.0333"},
               "destination": {"network_code": rng.choice(["23410", "23415"])}}
        if error:
            doc["error"] = {"type": f"https://developer.vonage.com/api-errors/messages#{error}", "title": int(error),
                            "detail": "rejected by the carrier"}
        plan.receipts.append((at, doc))
        if rng.random() < 0.03:
            plan.receipts.append((at + rng.uniform(0, 2), doc))
    plan.expected_status[uuid] = contract_status([MESSAGES_STATUS[chain[-1][0]]])
