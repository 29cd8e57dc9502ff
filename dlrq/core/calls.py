"""Redis calls as data, so that one implementation serves sync and async callers.

A store operation is a generator: it yields each command it needs and receives the reply
(or has the server's error raised at the `yield`); a list of commands is sent as one pipeline
and answered with the list of their replies. `run` drives it on a blocking client,
`arun` on an asyncio one; nothing else in dlrq needs to exist twice.

With `replicas`, each command goes with a `WAIT` in the same pipeline (one connection, one
round trip): the operation counts as done only once that many replicas have every write it
made (else NotReplicated).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from hashlib import sha1
from importlib.resources import files
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

T = TypeVar("T")
Call = tuple[Any, ...]
Steps = Generator[Call | list[Call], Any, T]


class NotReplicated(Exception):
    """Fewer replicas than asked confirmed the writes in time: they must not be acknowledged."""


def _confirmed(confirmed: int, replicas: int, timeout: float) -> None:
    if confirmed < replicas:
        raise NotReplicated(f"{confirmed} of {replicas} replicas confirmed the write within {timeout} s")


def run(client: redis.Redis, steps: Steps[T], replicas: int = 0, timeout: float = 0.5) -> T:
    return _run(client, replicated(steps, replicas, timeout) if replicas else steps)


async def arun(client: aioredis.Redis, steps: Steps[T], replicas: int = 0, timeout: float = 0.5) -> T:
    return await _arun(client, replicated(steps, replicas, timeout) if replicas else steps)


def replicated(steps: Steps[T], replicas: int, timeout: float) -> Steps[T]:
    """`steps` with each command followed by WAIT on its connection (WAIT counts the writes of its
    own connection, and a pipeline's commands share one)."""
    wait = ("WAIT", replicas, int(timeout * 1000))
    reply: Any = None
    error: ResponseError | None = None
    while True:
        try:
            call = steps.throw(error) if error else steps.send(reply)
        except StopIteration as done:
            return done.value
        try:
            *replies, confirmed = yield [*call, wait] if isinstance(call, list) else [call, wait]
        except ResponseError as exc:
            reply, error = None, exc
            continue
        _confirmed(confirmed, replicas, timeout)
        reply, error = (replies if isinstance(call, list) else replies[0]), None


def _run(client: redis.Redis, steps: Steps[T]) -> T:
    reply: Any = None
    error: ResponseError | None = None
    while True:
        try:
            call = steps.throw(error) if error else steps.send(reply)
        except StopIteration as done:
            return done.value
        try:
            if isinstance(call, list):
                with client.pipeline(transaction=False) as pipe:
                    for command in call:
                        pipe.execute_command(*command)
                    reply, error = pipe.execute(), None
            else:
                reply, error = client.execute_command(*call), None
        except ResponseError as exc:
            reply, error = None, exc


async def _arun(client: aioredis.Redis, steps: Steps[T]) -> T:
    reply: Any = None
    error: ResponseError | None = None
    while True:
        try:
            call = steps.throw(error) if error else steps.send(reply)
        except StopIteration as done:
            return done.value
        try:
            if isinstance(call, list):
                async with client.pipeline(transaction=False) as pipe:
                    for command in call:
                        pipe.execute_command(*command)
                    reply, error = await pipe.execute(), None
            else:
                reply, error = await client.execute_command(*call), None
        except ResponseError as exc:
            reply, error = None, exc


@dataclass(frozen=True)
class Script:
    """A Lua script, called by its hash; sent whole only when the server does not know it
    (a restarted server, or a newly promoted replica: the script cache is not replicated)."""

    source: bytes
    sha: str

    @classmethod
    def load(cls, package: str, name: str, libraries: tuple[str, ...] = ()) -> Script:
        """`libraries`: Lua files of dlrq.core's lua folder put before the script (shared functions)."""
        parts = [files(__package__).joinpath("lua", f"{library}.lua").read_bytes() for library in libraries]
        source = b"\n".join([*parts, files(package).joinpath("lua", f"{name}.lua").read_bytes()])
        return cls(source, sha1(source).hexdigest())

    def __call__(self, keys: list[Any], args: list[Any]) -> Steps[Any]:
        return (yield from self._send(lambda how, code: (how, code, len(keys), *keys, *args)))

    def each(self, calls: list[tuple[list[Any], list[Any]]]) -> Steps[list[Any]]:
        """Several calls (keys, args) in one pipeline, their replies in order."""
        return (yield from self._send(lambda how, code: [(how, code, len(k), *k, *a) for k, a in calls]))

    def _send(self, command: Callable[[str, str | bytes], Call | list[Call]]) -> Steps[Any]:
        try:
            return (yield command("EVALSHA", self.sha))
        except NoScriptError:
            return (yield command("EVAL", self.source))
