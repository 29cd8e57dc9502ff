import logging

from dlrq.core.settings import get_settings
from tests.support.receivers import Server, _Quiet
from workers.handlers import log_event, mask, post_webhook, resolve, sign


def test_phone_numbers_are_masked_in_logs_unless_asked_for(caplog, monkeypatch):
    event = {"id": "permanent_failure:M:1", "kind": "permanent_failure", "to": "447700900123", "message": "M"}
    with caplog.at_level(logging.WARNING, logger="dlrq.handlers"):
        log_event(event)
    assert "447700900123" not in caplog.text and "**********23" in caplog.text
    monkeypatch.setenv("DLRQ_LOG_PHONE_NUMBERS", "true")
    get_settings.cache_clear()
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dlrq.handlers"):
            log_event(event)
        assert "447700900123" in caplog.text
    finally:
        get_settings.cache_clear()


def test_mask_keeps_only_the_last_two_digits():
    assert mask("447700900123") == "**********23" and mask(None) is None and mask("") == ""


def test_handlers_resolve_by_name_or_dotted_path():
    assert resolve("log") is log_event
    assert resolve("workers.handlers:sign") is sign and resolve("workers.handlers.sign") is sign


def test_webhook_signature_is_hmac_sha256_of_the_body():
    # RFC 4231 test case 2.
    assert sign(b"what do ya want for nothing?", "Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_webhook_calls_reuse_one_open_connection(monkeypatch):
    """A client built per call cost each call about 20 ms of CPU (its TLS context) and a new
    connection; calls made in turn now share the process's client and its kept-alive connection."""
    peers: list[int] = []

    class KeepAlive(_Quiet):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.body()
            peers.append(self.client_address[1])
            self.answer(200)

    server = Server(KeepAlive)
    monkeypatch.setenv("DLRQ_WEBHOOK_URL", f"{server.url}/events")
    monkeypatch.setenv("DLRQ_WEBHOOK_SECRET", "s")
    get_settings.cache_clear()
    try:
        for n in range(3):
            post_webhook({"id": f"retry:M{n}:1", "kind": "retry", "message": f"M{n}"})
    finally:
        get_settings.cache_clear()
        server.close()
    assert len(peers) == 3 and len(set(peers)) == 1
