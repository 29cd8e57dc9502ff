"""Events raised in a real server: once each, one handler job per handler; failures visible and requeueable."""

from __future__ import annotations

import json

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from dlrq.core import keys
from dlrq.core.calls import run
from dlrq.core.events import Event
from dlrq.core.jobs import handler_job_id
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from tests.support.processes import dlrq, dlrq_env
from tests.support.receipts import receipt
from tests.support.sends import send
from workers.batch import apply
from workers.dispatch import Dispatcher

pytestmark = pytest.mark.integration


def handler_queue(r, settings):
    return Queue(settings.handler_queue, connection=r, serializer=JSONSerializer)


def test_an_event_is_raised_once_with_one_job_per_handler(r, redis_url):
    settings = Settings(redis_url=redis_url, alert_handlers="log,tests.support.probe.record")
    dispatcher = Dispatcher(r, settings)
    event = Event("permanent_failure:M:1", "permanent_failure", {"message": "M"})
    assert dispatcher.raise_event(event) is True
    assert dispatcher.raise_event(event) is False
    assert Dispatcher(r, settings).raise_event(event) is False, "another worker finds it raised too"
    queue = handler_queue(r, settings)
    assert sorted(queue.get_job_ids()) == sorted(handler_job_id(event.id, h) for h in ("log", "tests.support.probe.record"))
    job = queue.fetch_job(handler_job_id(event.id, "log"))
    assert job.args[0]["id"] == event.id and job.args[1] == "log"


def test_a_batch_of_events_is_raised_in_one_call_each_once_even_on_a_server_that_lost_its_scripts(r, redis_url):
    """A newly promoted replica has no scripts cached: the whole batch is sent again as EVAL."""
    settings = Settings(redis_url=redis_url, alert_handlers="log")
    events = [Event(f"permanent_failure:M{i}:1", "permanent_failure", {"message": f"M{i}"}) for i in range(3)]
    r.script_flush()
    assert Dispatcher(r, settings).raise_events([(events[0], None), (events[1], None)]) == 2
    r.script_flush()
    assert Dispatcher(r, settings).raise_events([(e, None) for e in events]) == 1, "only the third is new"
    assert sorted(handler_queue(r, settings).get_job_ids()) == sorted(handler_job_id(e.id, "log") for e in events)


def test_a_retry_waits_in_rq_schedule_for_its_backoff(r, redis_url):
    settings = Settings(redis_url=redis_url, retry_handlers="vonage", vonage_api_key="k", vonage_api_secret="s")
    assert Dispatcher(r, settings).raise_event(Event("retry:M:1", "retry", {"message": "M"}, delay=300))
    queue = handler_queue(r, settings)
    assert queue.count == 0
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [handler_job_id("retry:M:1", "vonage")]


def test_failed_handler_jobs_are_listed_and_requeued_from_the_cli(r, redis_url):
    settings = Settings(redis_url=redis_url)
    queue = handler_queue(r, settings)
    queue.enqueue("workers.handlers.deliver", {"id": "x:1", "kind": "x"}, "tests.support.probe.explode", job_id="boom")
    from workers.worker import build_worker

    build_worker(settings).work(burst=True, logging_level="WARNING")
    assert FailedJobRegistry(queue=queue).get_job_ids() == ["boom"]
    assert r.hget(keys.COUNTERS, "handler:tests.support.probe.explode:error") == b"1", "counted for /metrics"

    env = dlrq_env(redis_url)
    listed = dlrq(env, "failed", "list").stdout
    assert "boom" in listed and "handler down for x:1" in listed
    requeued = dlrq(env, "failed", "requeue", "--all").stdout
    assert "requeued 1" in requeued
    assert queue.get_job_ids() == ["boom"] and FailedJobRegistry(queue=queue).count == 0
    assert json.loads(json.dumps(queue.fetch_job("boom").args[0])) == {"id": "x:1", "kind": "x"}


def test_a_handler_job_run_again_after_its_call_succeeded_does_not_call_again(r, redis_url):
    """As when its worker dies, or Redis fails, after the call and before RQ records the job finished."""
    from tests.support.probe import CALLS
    from workers.worker import build_worker

    settings = Settings(redis_url=redis_url, alert_handlers="tests.support.probe.record")
    assert Dispatcher(r, settings).raise_event(Event("permanent_failure:M:1", "permanent_failure", {"message": "M"}))
    queue = handler_queue(r, settings)
    job_id = handler_job_id("permanent_failure:M:1", "tests.support.probe.record")
    unfinished = r.dump(Job.key_for(job_id))  # the job as its dead worker would have left it
    build_worker(settings).work(burst=True, logging_level="WARNING")
    assert r.llen(CALLS) == 1
    assert queue.fetch_job(job_id) is None, "a finished call leaves no job behind"
    r.restore(Job.key_for(job_id), 0, unfinished)
    queue.enqueue_job(queue.fetch_job(job_id))  # run again
    build_worker(settings).work(burst=True, logging_level="WARNING")
    assert queue.fetch_job(job_id) is None
    assert r.llen(CALLS) == 1, "the second run found the call marked as made"
    assert r.hget(keys.COUNTERS, "handler:tests.support.probe.record:ok") == b"1"


def test_handler_calls_are_retried_at_the_configured_steps(r, redis_url):
    settings = Settings(redis_url=redis_url, alert_handlers="log", handler_retry_backoff="5, 30")
    Dispatcher(r, settings).raise_event(Event("permanent_failure:M:1", "permanent_failure", {"message": "M"}))
    job = handler_queue(r, settings).fetch_job(handler_job_id("permanent_failure:M:1", "log"))
    assert (job.retries_left, job.retry_intervals) == (2, [5, 30])
    with pytest.raises(ValueError, match="whole seconds"):
        Settings(handler_retry_backoff="5,soon")


def test_a_retry_or_alert_made_moot_is_not_called_and_shows_as_superseded(r, redis_url):
    """MOOT1 was resent and delivered meanwhile, ALERT1 resent: their retry and alert are moot.
    RESENT1 was resent by its own retry's first handler (a vonage call, already made): the retry's
    other handlers are still called. STILL1 is still failed: called."""
    from tests.support.probe import CALLS
    from workers.worker import build_worker

    handler = "tests.support.probe.record"
    settings = Settings(redis_url=redis_url, retry_handlers=f"log,{handler}", alert_handlers=handler)
    for message, kind in (("MOOT1", "retry"), ("RESENT1", "retry"), ("ALERT1", "permanent_failure"),
                          ("STILL1", "retry")):
        run(r, register(parse_send(send([message])), settings))
        apply(r, [Receipt(receipt(message, "failed", 5, "1"), utc_now_iso())], settings)
        assert Dispatcher(r, settings).raise_event(Event(f"{kind}:{message}:1", kind, {"message": message,
                                                                                       "attempt": 1}))
        if message != "STILL1":
            run(r, register(parse_send(send([message.replace("1", "2")], retry_of=message)), settings))
    apply(r, [Receipt(receipt("MOOT2", "delivered", 5), utc_now_iso())], settings)
    r.set(keys.delivered(handler_job_id("retry:RESENT1:1", "log")), "1")  # its first handler was called
    build_worker(settings).work(burst=True, logging_level="WARNING")
    assert sorted(json.loads(call)["id"] for call in r.lrange(CALLS, 0, -1)) == ["retry:RESENT1:1", "retry:STILL1:1"]
    assert r.hget(keys.COUNTERS, keys.count_handler(handler, "superseded")) == b"2"
    env = dlrq_env(redis_url, DLRQ_RETRY_HANDLERS=f"log,{handler}", DLRQ_ALERT_HANDLERS=handler)
    for message, event, statuses in (("MOOT1", "retry:MOOT1:1", ["superseded", "superseded"]),
                                     ("ALERT1", "permanent_failure:ALERT1:1", ["superseded"])):
        shown = json.loads(dlrq(env, "show", message).stdout)
        calls = {e["id"]: [c["status"] for c in e["calls"]] for e in shown["events"]}
        assert calls[event] == statuses, shown["events"]
