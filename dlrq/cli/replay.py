"""Replay receipts from JSONL files: onto the queue through the ingest's own batch path, or over HTTP.

A line is a recorded receipt ({"received_at", "params"}, and "adapter" for a Messages API
status) or a plain parameter object (an SMS receipt's);
files may be gzipped. Every line is accounted for: accepted, refused (with its reason,
and for unreadable lines their file and line number), or failed (could not be delivered);
a file that cannot be read to its end (a truncated or damaged gzip) is named with why, and
the lines read from it before that still count.
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from redis.exceptions import RedisError

from dlrq.core import jsondoc, messages_api
from dlrq.core.receipt import MESSAGES, SMS, InvalidReceipt, Receipt, stringify, utc_now_iso, validate
from ingest.enqueue import BatchEnqueuer

GZIP_MAGIC = b"\x1f\x8b"
MAX_REPORTED = 20
T = TypeVar("T")
Progress = Callable[[int], object]


@dataclass
class Summary:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    unreadable: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreported: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(text)
        else:
            self.unreported += 1

    def refuse(self, where: str, code: str, detail: str) -> None:
        self.refused[code] += 1
        self.problem(f"{where}: refused ({code}): {detail}")

    @property
    def ok(self) -> bool:
        """Every line of every file was read and accepted."""
        return not (self.failed or self.refused or self.unreadable)

    def line(self) -> str:
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(self.refused.items()))
        refused = sum(self.refused.values())
        text = (f"sent {self.sent}, accepted {self.accepted}, refused {refused}"
                + (f" ({reasons})" if reasons else "") + f", failed {self.failed}")
        return text + (f", unreadable files {len(self.unreadable)}" if self.unreadable else "")

    def reason(self) -> str | None:
        """Why the replay is not a success, in one line; None when it is."""
        if self.unreadable:
            return f"could not read {self.unreadable[0]}"
        if self.failed:
            return f"{self.failed} receipts could not be delivered"
        if self.refused:
            return f"{sum(self.refused.values())} lines were refused"
        return None


def read_lines(paths: Iterable[Path], summary: Summary) -> Iterator[tuple[str, bytes]]:
    """(file:line, line) for every non-blank line; gzip is recognised by its magic bytes.

    A file that breaks off (truncated, corrupt, unreadable) is noted in the summary; reading goes on
    with the next file."""
    for path in paths:
        number = 0
        try:
            with open(path, "rb") as raw:
                gzipped = raw.read(2) == GZIP_MAGIC
            with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as lines:
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        yield f"{path}:{number}", line
        except (OSError, EOFError, zlib.error) as exc:
            reason = str(exc) or type(exc).__name__
            summary.unreadable.append(f"{path} after line {number}: {reason}")
            summary.problem(f"{path}: unreadable after line {number}: {reason}")


def parse_line(line: bytes) -> dict[str, Any]:
    obj = jsondoc.loads(line)
    if not isinstance(obj, dict):
        raise InvalidReceipt("not_an_object", "a line must be a JSON object")
    return obj


def to_receipt(obj: dict[str, Any]) -> Receipt:
    """A recorded receipt keeps its time of arrival; plain parameters arrive now."""
    if isinstance(obj.get("params"), dict) and "received_at" in obj:
        return Receipt.from_record(obj)
    return Receipt(validate(stringify(obj)), utc_now_iso())


def to_request(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The webhook (adapter) a line goes to, and the JSON it posts: a recorded Messages API status
    goes back to the Messages API's webhook, as the callback it was."""
    if not (isinstance(obj.get("params"), dict) and "received_at" in obj):
        return SMS, obj
    receipt = Receipt.from_record(obj)
    if receipt.adapter == MESSAGES:
        return MESSAGES, messages_api.to_callback(receipt.params)
    return SMS, obj["params"]


def readable(lines: Iterable[tuple[str, bytes]], read: Callable[[dict[str, Any]], T], summary: Summary,
             progress: Progress) -> Iterator[tuple[str, T]]:
    """Each line that `read` accepts; the others are refused in the summary, with their place."""
    for where, line in lines:
        try:
            yield where, read(parse_line(line))
        except InvalidReceipt as exc:
            summary.refuse(where, exc.code, exc.detail)
            progress(1)


async def replay_to_queue(
    lines: Iterable[tuple[str, bytes]],
    enqueue: BatchEnqueuer,
    batch_size: int,
    summary: Summary,
    rate: float | None = None,
    progress: Progress = lambda n: None,
) -> Summary:
    """Validate as the ingest does (no signature check: the receipts were checked when recorded).

    Paced to `rate`, a batch holds at most a tenth of a second's receipts.
    """
    batch: list[Receipt] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    if rate:
        batch_size = max(1, min(batch_size, int(rate / 10)))

    async def flush() -> None:
        summary.sent += len(batch)
        try:
            await enqueue(batch)
            summary.accepted += len(batch)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            summary.failed += len(batch)
            summary.problem(f"{len(batch)} receipts not stored: {exc}")
        progress(len(batch))
        batch.clear()

    for _, receipt in readable(lines, to_receipt, summary, progress):
        if rate:
            await asyncio.sleep(max(0.0, start + (summary.sent + len(batch)) / rate - loop.time()))
        batch.append(receipt)
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    return summary


async def replay_over_http(
    lines: Iterable[tuple[str, bytes]],
    urls: dict[str, str],
    summary: Summary,
    rate: float | None,
    concurrency: int,
    progress: Progress = lambda n: None,
) -> Summary:
    """POST each receipt as JSON to its adapter's URL, at most `concurrency` at a time, paced to `rate` per second."""
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def post(http: httpx.AsyncClient, where: str, request: tuple[str, dict[str, Any]]) -> None:
        adapter, body = request
        try:
            response = await http.post(urls[adapter], json=body)
            if response.is_success:
                summary.accepted += 1
            elif 400 <= response.status_code < 500:
                code = _error_code(response)
                summary.refuse(where, code, f"HTTP {response.status_code}")
            else:
                summary.failed += 1
                summary.problem(f"{where}: failed: HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            summary.failed += 1
            summary.problem(f"{where}: failed: {exc!r}")
        finally:
            slots.release()
            progress(1)

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as http:
        start = loop.time()
        for where, request in readable(lines, to_request, summary, progress):
            if rate:
                await asyncio.sleep(max(0.0, start + summary.sent / rate - loop.time()))
            await slots.acquire()
            summary.sent += 1
            task = asyncio.create_task(post(http, where, request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return summary


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def report(summary: Summary) -> None:
    for problem in summary.problems:
        print(problem, file=sys.stderr)
    if summary.unreported:
        print(f"... and {summary.unreported} more", file=sys.stderr)
