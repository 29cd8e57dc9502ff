"""Small HTTP servers the tests start: the SMS API's send endpoint, and a webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl


class Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def answer(self, status: int, payload: dict | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the caller gave up: it will call again


class FakeSmsApi(Server):
    """POST /sms/json: answers like the SMS API, with a new message-id for each send."""

    def __init__(self) -> None:
        self.sends: list[dict[str, str]] = []
        super().__init__(self._Handler)

    class _Handler(_Quiet):
        def do_POST(self) -> None:  # noqa: N802
            owner: FakeSmsApi = self.server.owner  # type: ignore[attr-defined]
            form = dict(parse_qsl(self.body().decode()))
            with owner.lock:
                owner.sends.append(form)
                message_id = f"RESENT{len(owner.sends):04d}"
            if self.path != "/sms/json" or form.get("api_secret") != "test-secret":
                return self.answer(401, {"error": "bad credentials"})
            part = {"to": form["to"], "message-id": message_id, "status": "0", "message-price": "0.03330000",
                    "network": "23410", "client-ref": form.get("client-ref", "")}
            self.answer(200, {"message-count": "1", "messages": [part]})


class WebhookReceiver(Server):
    """The `webhook` handler's endpoint: checks each body's HMAC-SHA256 signature, counts deliveries
    (2xx answers) by event id and kind, and can fail on demand.

    mode: "ok"; "error" (answers 500); "timeout" (answers 500 after `timeout` + 0.5 s, when the
    caller has given up).
    """

    def __init__(self, secret: str, timeout: float = 5.0) -> None:
        self.secret = secret.encode()
        self.timeout = timeout
        self.mode = "ok"
        self.calls: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.first_refused: dict[str, float] = {}
        self.first_delivered: dict[str, float] = {}
        self.bad_signatures = 0
        super().__init__(self._Handler)
        self.url += "/events"

    class _Handler(_Quiet):
        def do_POST(self) -> None:  # noqa: N802
            owner: WebhookReceiver = self.server.owner  # type: ignore[attr-defined]
            owner.handle(self, self.body())

    def handle(self, request: _Quiet, body: bytes) -> None:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        mode = self.mode
        with self.lock:
            if not hmac.compare_digest(request.headers.get("X-Dlrq-Signature", ""), expected):
                self.bad_signatures += 1
                status = 401
            elif mode != "ok":
                self.first_refused.setdefault(request.headers.get("X-Dlrq-Event-Id", ""), time.monotonic())
                status = 500
            else:
                event = json.loads(body)
                assert request.headers["X-Dlrq-Event-Id"] == event["id"]
                self.calls[event["id"]] += 1
                self.kinds[event["kind"]] += 1
                self.first_delivered.setdefault(event["id"], time.monotonic())
                status = 200
        if mode == "timeout":
            time.sleep(self.timeout + 0.5)
        request.answer(status)
