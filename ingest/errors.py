"""The contract's error answer, `{"error": "<code>", "detail": "<human text>"}`, for every route."""

from __future__ import annotations

from starlette.responses import JSONResponse


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)
