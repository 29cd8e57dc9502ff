"""JSON from outside dlrq, refused with a reason: not JSON, nested too deeply, a key given twice,
a number out of range.

A key given twice is ambiguous (`{"status": "delivered", "status": "failed"}`): Python keeps
the last one silently, another reader the first. Nesting deep enough to exhaust the parser's
recursion would otherwise surface as a server error. 1e999 would be read as infinity (and
NaN, which JSON does not have, as itself).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .receipt import InvalidReceipt


class _DuplicateKey(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(repeated(name for name, _ in pairs))
    return obj


def repeated(names: Any) -> str:
    """The first name that comes again."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return str(name)
        seen.add(name)
    raise ValueError("no name comes twice")


def _finite(text: str) -> float:
    """A JSON number; 1e999 would be read as infinity, and stored as "inf"."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")


# A decoder made once: json.loads would look one up on every call (and costs more than this hook).
_DECODER = json.JSONDecoder(object_pairs_hook=_unique, parse_float=_finite, parse_constant=_no_constant)


def loads(data: bytes | str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InvalidReceipt("bad_encoding", "body is not valid UTF-8") from exc
    try:
        return _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise InvalidReceipt("malformed_field", f"{exc} is given twice") from None
    except RecursionError:
        raise InvalidReceipt("bad_json", "JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidReceipt("bad_json", f"not valid JSON: {exc}") from exc
