"""Workers apply batches to part state: resends, disorder and re-runs change nothing they should not."""

import json

import pytest
from rq import Retry
from rq.job import Job
from rq.registry import FailedJobRegistry
from starlette.testclient import TestClient

from dlrq.core import connect, keys
from dlrq.core.calls import run
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.records import load_part
from dlrq.core.store import find_message
from ingest.app import create_app
from tests.support.queues import drain, queue_of
from tests.support.receipts import DOCS_ACCEPTED, DOCS_DELIVERED, receipt
from tests.support.sends import send
from workers import current
from workers.batch import apply_batch

pytestmark = pytest.mark.integration
PATH = "/webhooks/delivery-receipt"


def post_all(settings, receipts):
    with TestClient(create_app(settings)) as c:
        for params in receipts:
            assert c.post(PATH, json=params).status_code == 204


def message(settings, message_id):
    with connect.client(settings) as client:
        return run(client, find_message(message_id))


def test_documented_receipts_make_a_delivered_message(settings):
    post_all(settings, [DOCS_ACCEPTED, DOCS_DELIVERED])
    assert message(settings, DOCS_ACCEPTED["messageId"]) is None, "nothing is applied before a worker runs"
    drain(settings)
    view = message(settings, DOCS_ACCEPTED["messageId"])
    assert view["status"] == "delivered" and view["registered"] is False
    assert view["to"] == "447547232824" and view["parts_expected"] == 1 and view["attempts"] == 1
    [part] = view["parts"]
    assert part["status"] == "delivered" and part["err_code"] == "0" and part["scts"] == "1810251310"
    assert [h["status"] for h in part["history"]] == ["accepted", "delivered"]
    assert set(part["history"][0]) == {"status", "err_code", "message_timestamp", "received_at"}


def test_resends_appear_once_and_late_accepted_does_not_undo_delivered(settings):
    resend = {**DOCS_DELIVERED, "timestamp": "1700000000", "nonce": "other"}
    post_all(settings, [DOCS_DELIVERED, DOCS_DELIVERED, resend, DOCS_ACCEPTED, DOCS_ACCEPTED])
    drain(settings)
    [part] = message(settings, DOCS_DELIVERED["messageId"])["parts"]
    assert part["status"] == "delivered"
    assert [h["status"] for h in part["history"]] == ["accepted", "delivered"]


def test_unrecognised_status_is_recorded_but_never_decides(settings):
    post_all(settings, [receipt("m-odd", "DELIVRD", 1)])
    drain(settings)
    view = message(settings, "m-odd")
    assert view["status"] == "pending" and view["parts"][0]["status"] is None
    post_all(settings, [receipt("m-odd", "accepted", 2), receipt("m-odd", "UNDELIV", 3)])
    drain(settings)
    view = message(settings, "m-odd")
    assert view["parts"][0]["status"] == "accepted"
    assert [h["status"] for h in view["parts"][0]["history"]] == ["DELIVRD", "accepted", "UNDELIV"]


def test_failure_after_delivery_report_with_later_timestamp_wins(settings):
    post_all(settings, [receipt("m-f", "failed", 9, "2"), receipt("m-f", "delivered", 3)])
    drain(settings)
    view = message(settings, "m-f")
    assert view["status"] == "failed" and view["parts"][0]["err_code"] == "2"


def test_running_a_batch_again_changes_nothing(settings, r):
    post_all(settings, [DOCS_ACCEPTED, DOCS_DELIVERED])
    records = [record for job in queue_of(r, settings).get_jobs() for record in job.args[0]]
    drain(settings)
    before = r.get(keys.part(DOCS_ACCEPTED["messageId"]))
    again = Job.create(apply_batch, args=(records,), connection=r)
    assert again.perform() == {"new": 0, "resends": 2}
    assert r.get(keys.part(DOCS_ACCEPTED["messageId"])) == before


def test_a_batch_of_failures_raises_one_alert_per_failed_message(settings, r):
    """Two failed parts of one message and a failed message of its own, in one batch: two alerts."""
    with TestClient(create_app(settings)) as c:
        registered = c.post("/messages", json=send(["two-1", "two-2"])).json()["id"]
    records = [Receipt(receipt(i, "failed", 5, "3"), utc_now_iso()).to_record() for i in ("two-1", "two-2", "one")]
    with current.using(settings):
        assert Job.create(apply_batch, args=(records,), connection=r).perform() == {"new": 3, "resends": 0}
    alerts = [json.loads(raw) for raw in r.lrange(keys.ALERTS, 0, -1)]
    assert sorted((a["kind"], a["message"]) for a in alerts) == sorted(
        [("permanent_failure", registered), ("permanent_failure", "one")])
    assert [a["kind"] for a in message(settings, "two-2")["alerts"]] == ["permanent_failure"]


def test_part_records_expire_after_retention(settings, r):
    post_all(settings, [DOCS_DELIVERED])
    drain(settings)
    ttl = r.ttl(keys.part(DOCS_DELIVERED["messageId"]))
    assert settings.dedupe_ttl <= ttl <= settings.record_ttl
    assert load_part(r.get(keys.part(DOCS_DELIVERED["messageId"])))["history"][0]["status"] == "delivered"


def test_malformed_records_are_kept_aside_one_by_one_and_the_rest_is_applied(settings, r):
    queue = queue_of(r, settings)
    good = {"params": DOCS_ACCEPTED, "received_at": "2020-01-01T00:00:00.000Z"}
    bad = queue.enqueue(
        "workers.batch.apply_batch",
        [good, {"params": {"status": "delivered"}, "received_at": "x"}, {"params": {"messageId": ["nested"]}}],
        retry=Retry(max=5, interval=[0]),
    )
    junk = queue.enqueue("workers.batch.apply_batch", "not a list")
    post_all(settings, [DOCS_DELIVERED])
    drain(settings)
    assert bad.get_status(refresh=True) == "finished", "a batch is never held back by what one receipt holds"
    assert junk.get_status(refresh=True) == "failed" and "a batch is a list" in junk.latest_result().exc_string
    failed = FailedJobRegistry(queue=queue)
    aside = sorted(j for j in failed.get_job_ids() if j.startswith(bad.id))
    assert aside == [f"{bad.id}-aside-1", f"{bad.id}-aside-2"], "each unappliable record kept aside on its own"
    reasons = [Job.fetch(j, connection=r).latest_result().exc_string for j in aside]
    assert "missing_field: messageId" in reasons[0] and "malformed_record" in reasons[1]
    assert failed.count == 3, "no retries: they would fail the same way"
    assert int(r.hget(keys.COUNTERS, keys.COUNT_KEPT_ASIDE)) == 2
    assert [h["status"] for h in message(settings, DOCS_DELIVERED["messageId"])["parts"][0]["history"]] == [
        "accepted", "delivered"], "the valid receipt in the malformed batch was applied, the next batch too"


def test_a_dead_schedulers_lock_is_released_and_a_live_ones_is_kept(settings, r):
    from datetime import datetime, timedelta, timezone

    from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE
    from rq.utils import utcformat

    from workers.scheduling import SCHEDULER_DEAD_AFTER, release_dead_scheduler_locks

    now = datetime.now(timezone.utc)
    beats = {"live": now - timedelta(seconds=2), "dead": now - timedelta(seconds=SCHEDULER_DEAD_AFTER + 1)}
    for queue, holder in (("q-live", "live"), ("q-dead", "dead"), ("q-gone", "gone")):
        r.set(SCHEDULER_LOCKING_KEY_TEMPLATE % queue, holder, ex=61)
        if holder in beats:
            r.hset(SCHEDULER_KEY_TEMPLATE % holder, "last_heartbeat", utcformat(beats[holder]))
    released = release_dead_scheduler_locks(r, ["q-live", "q-dead", "q-gone", "q-none"], now)
    assert released == ["q-dead", "q-gone"]
    assert r.get(SCHEDULER_LOCKING_KEY_TEMPLATE % "q-live") == b"live"


def test_a_job_stranded_in_the_intermediate_list_runs_again_within_seconds_without_spending_a_retry(settings, r):
    """Its worker took it and died before starting it; RQ alone would wait for its cleaning lock,
    then rerun it as a failure (one retry step spent)."""
    import time

    from workers.queues import CLEANING_LOCK_TTL, FIRST_SEEN_TTL, STRANDED_AFTER
    from workers.recovery import abandoned
    from workers.worker import build_worker

    queue = queue_of(r, settings)
    job = queue.enqueue("workers.batch.apply_batch", [], job_id="stranded", retry=Retry(max=3))
    r.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")  # taken, never started
    worker = build_worker(settings)
    worker.run_maintenance_tasks()  # first seen
    assert r.llen(queue.intermediate_queue_key) == 1, "seen once: it may be starting right now"
    seen = queue.intermediate_queue.get_first_seen_key("stranded")
    assert 0 < r.ttl(seen) <= FIRST_SEEN_TTL, "a sighting is kept an hour, not RQ's day"
    r.set(seen, time.time() - STRANDED_AFTER - 1)
    worker.run_maintenance_tasks()
    assert r.llen(queue.intermediate_queue_key) == 0
    assert queue.get_job_ids()[0] == "stranded", "back at the front of its queue"
    assert not r.exists(seen), "its sighting is forgotten: taken again, it must not pass for stranded at once"
    job.refresh()
    assert job.get_status() == "queued" and job.retries_left == 3, "no retry step spent"
    assert abandoned(job) == 1
    assert worker.queues[0].acquire_maintenance_lock()
    assert 0 < r.ttl(queue.registry_cleaning_key) <= CLEANING_LOCK_TTL, "a worker killed while cleaning holds it briefly"


def test_a_job_whose_worker_died_between_registering_and_starting_its_run_runs_again(settings, r):
    """RQ's own worker registers a run (started registry) and only then marks the job started and takes
    it out of the intermediate list (dlrq's does both at once): a worker killed in between left a job
    that looked neither abandoned nor stranded until RQ's clean-up dropped its run (seen as 15-30 s
    recoveries in the fault suite)."""
    from rq.registry import StartedJobRegistry

    from workers.queues import TakeThroughIntermediate
    from workers.recovery import abandoned, rescue
    from workers.worker import build_worker

    queue = queue_of(r, settings)
    queue.enqueue("workers.batch.apply_batch", [], job_id="half-started", retry=Retry(max=3))
    worker = build_worker(settings)
    job, taken_from = TakeThroughIntermediate.dequeue_any(worker.queues, None, connection=r,
                                                          serializer=worker.serializer)
    worker.prepare_execution(job)  # ... and the worker dies here
    registry = StartedJobRegistry(queue=taken_from)
    [run_id] = r.zrange(registry.key, 0, -1)
    r.zadd(registry.key, {run_id: 1})  # its heartbeat lapsed long ago
    assert rescue(worker.queues) == ["half-started"]
    assert queue.get_job_ids() == ["half-started"] and r.llen(queue.intermediate_queue_key) == 0
    job.refresh()
    assert job.get_status() == "queued" and job.retries_left == 3 and abandoned(job) == 1
    assert rescue(worker.queues) == [], "run again once"


def test_a_finished_batch_looks_to_rq_as_if_rq_had_run_it(settings, r):
    """dlrq's worker does RQ's bookkeeping in fewer round trips: `rq info`, dashboards and
    `Job.fetch` must still see what RQ's own worker would leave."""
    from rq.registry import FinishedJobRegistry, StartedJobRegistry

    from workers.worker import build_worker

    records = [Receipt(params, utc_now_iso()).to_record() for params in (DOCS_ACCEPTED, DOCS_DELIVERED)]
    queue = queue_of(r, settings)
    job_id = queue.enqueue(keys.BATCH_JOB, records, result_ttl=600).id
    worker = build_worker(settings)
    assert worker.work(burst=True, logging_level="WARNING")
    job = Job.fetch(job_id, connection=r, serializer=queue.serializer)
    assert job.get_status() == "finished" and job.worker_name == worker.name
    assert job.started_at <= job.ended_at and job.last_heartbeat >= job.started_at
    assert job.latest_result().return_value == {"new": 2, "resends": 0}
    assert job_id in FinishedJobRegistry(queue=queue) and StartedJobRegistry(queue=queue).count == 0
    assert r.llen(queue.intermediate_queue_key) == 0 and job.execution_registry.get_execution_ids() == []
    assert 500 < r.ttl(job.key) <= 600, "kept as long as its result, then gone"
    stats = r.hgetall(worker.key)
    assert stats[b"successful_job_count"] == b"1" and float(stats[b"total_working_time"]) > 0
    worker.connection.close()


def test_a_batch_costs_redis_a_handful_of_round_trips_however_many_receipts_it_holds(settings, r):
    """What bounds one worker's rate. Before dlrq took RQ's bookkeeping into its own hands, such a batch
    cost 13 (take, fetch, two to start, apply, three reads to react to the failure, raise, heartbeat,
    watch, dependents, finish, idle): now 7 (take, fetch, start, apply, one read, raise, finish).
    Counted as the worker's connection sends them: a command or a pipeline, each one round trip."""
    import redis as redis_py

    from workers.worker import build_worker

    sent = [0]

    class Counting(redis_py.Connection):
        def send_packed_command(self, command, check_health=True):  # noqa: ANN001
            sent[0] += 1
            return super().send_packed_command(command, check_health)

    def round_trips(batches: int, tag: str) -> int:
        queue = queue_of(r, settings)
        for b in range(batches):
            # 31 receipts delivered, one failed (its registered message is read, a retry event raised).
            with TestClient(create_app(settings)) as c:
                assert c.post("/messages", json=send([f"rt-{tag}-{b}-0"])).status_code == 201
            queue.enqueue(keys.BATCH_JOB, [
                Receipt(receipt(f"rt-{tag}-{b}-{i}", "delivered" if i else "failed", 5, "0" if i else "2"),
                        utc_now_iso()).to_record() for i in range(32)])
        assert queue_of(r, settings).count == batches
        worker = build_worker(settings, connection=redis_py.Redis.from_url(settings.redis_url,
                                                                           connection_class=Counting))
        before = sent[0]
        worker.work(burst=True, logging_level="WARNING")
        worker.connection.close()
        return sent[0] - before

    per_batch = (round_trips(6, "six") - round_trips(1, "one")) / 5
    assert per_batch <= 8, f"{per_batch} round trips a batch"
