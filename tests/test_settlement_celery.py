"""Settlement on Celery: a real Celery worker (Redis broker) closes, opens and settles a
campaign beside a second worker running the same service in-process; each pledge is
charged once. Skipped when Redis is unreachable, unless REQUIRE_POSTGRES=1 (CI has Redis)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund import workers
from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.engine.service import PledgeRequest, place_pledge
from crowdfund.extensions import db
from crowdfund.jobs import registry
from crowdfund.models_base import utcnow
from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
from crowdfund.payments.sandbox import SandboxCharge
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem
from crowdfund.settlement.service import process_due_items
from tests.factories import cny, make_backer, make_campaign

BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
PLEDGES = 24
#: Items a worker claims at a time here.
BATCH = 2


@pytest.fixture
def broker_url():
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(BROKER_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except RedisError as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis at {BROKER_URL} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    finally:
        client.close()
    return BROKER_URL


@pytest.fixture
def celery(app, broker_url):
    """The app's Celery, on a queue of this test's own (other runs may share the Redis)."""
    app.config["CELERY_BROKER_URL"] = broker_url
    celery = workers.make_celery(app)
    queue = f"healthfund-test-{uuid.uuid4().hex[:10]}"
    celery.conf.task_default_queue = queue
    yield celery
    with celery.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)
    celery.close()


def wait_for(condition, timeout: float = 90.0, what: str = "the workers") -> None:
    """Poll the database (a fresh read each time) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()  # end the last read's transaction: see what the workers committed
        if condition():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(0.1)


def campaign_with_pledges(n: int) -> Campaign:
    """A live reward campaign with `n` pledges without reward (¥10 each) that meet its goal."""
    campaign = make_campaign(goal=n * 1_000)
    for _ in range(n):
        backer = make_backer()
        place_pledge(backer, campaign.id, PledgeRequest(amount=cny(10)))
    return campaign


def items_left(settlement_id: int) -> int:
    return db.session.scalar(
        select(func.count(SettlementItem.id)).where(
            SettlementItem.settlement_id == settlement_id,
            SettlementItem.state.in_([ItemState.PENDING, ItemState.CHARGING]),
        )
    )


def test_a_celery_worker_settles_a_campaign_beside_a_second_worker(app, celery):
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    campaign = campaign_with_pledges(PLEDGES)
    after_close = (campaign.end_at + timedelta(minutes=1)).isoformat()
    worked_by_celery: Counter[str] = Counter()

    def note(sender=None, retval=None, **_):
        if isinstance(retval, int):
            worked_by_celery[sender.name] += retval

    task_postrun.connect(note, weak=False)
    second_worked = []

    def second_worker(moment: str) -> None:
        """The embedded path, in a thread of its own: process_due_items until nothing is due."""
        with app.app_context():
            total = 0
            while done := process_due_items(now=workers._moment(moment), limit=BATCH):
                total += done
            second_worked.append(total)

    try:
        with start_worker(
            celery, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
        ):
            # Close the campaign and open its settlement through the workers' job tasks.
            celery.send_task("jobs.campaigns.close", args=(after_close,))
            wait_for(lambda: db.session.get(Campaign, campaign.id).state is not CampaignState.LIVE)
            celery.send_task("jobs.settlement.open", args=(after_close,))
            wait_for(
                lambda: db.session.scalar(select(Settlement.id).where(Settlement.campaign_id == campaign.id))
            )
            settlement_id = db.session.scalar(
                select(Settlement.id).where(Settlement.campaign_id == campaign.id)
            )
            assert items_left(settlement_id) == PLEDGES

            # Two settlement.work messages for the Celery worker's two slots (small batches, so
            # that the work spreads); once it has charged something, a second worker joins in.
            for _ in range(2):
                celery.send_task(workers.WORK_TASK, args=(after_close, BATCH))
            wait_for(lambda: items_left(settlement_id) < PLEDGES)
            second = threading.Thread(target=second_worker, args=(after_close,))
            second.start()
            wait_for(lambda: items_left(settlement_id) == 0)
            second.join(timeout=60)
    finally:
        task_postrun.disconnect(note)

    items = db.session.scalars(
        select(SettlementItem).where(SettlementItem.settlement_id == settlement_id)
    ).all()
    assert len(items) == PLEDGES
    assert {item.state for item in items} == {ItemState.CHARGED}
    # Each pledge charged exactly once, at the gateway and in our records.
    charges = db.session.scalars(select(SandboxCharge)).all()
    assert len(charges) == PLEDGES
    assert sorted(c.details.get("pledge_id") for c in charges) == sorted(str(i.pledge_id) for i in items)
    succeeded = db.session.scalar(
        select(func.count(PaymentOperation.id)).where(
            PaymentOperation.kind == OperationKind.CHARGE,
            PaymentOperation.campaign_id == campaign.id,
            PaymentOperation.state == OperationState.SUCCEEDED,
        )
    )
    assert succeeded == PLEDGES
    # The Celery worker really worked items (and the second worker ran beside it).
    assert worked_by_celery[workers.WORK_TASK] > 0
    assert second_worked and worked_by_celery[workers.WORK_TASK] + second_worked[0] >= PLEDGES


def test_every_job_is_a_task_and_on_beat(app, broker_url):
    app.config["CELERY_BROKER_URL"] = broker_url
    app.config["CELERY_BEAT_SECONDS"] = 7
    celery = workers.make_celery(app)
    schedule = celery.conf.beat_schedule
    for job in registry():
        assert workers.job_task_name(job.name) in celery.tasks
        entry = schedule[job.name]
        assert entry["task"] in celery.tasks
        assert entry["schedule"] == (job.every.total_seconds() or 7)
        assert entry["options"]["expires"] == entry["schedule"]
    assert schedule["settlement.charge"]["task"] == workers.WORK_TASK
    celery.close()


def test_a_job_task_runs_the_job_in_an_app_context(app, broker_url):
    """The task body as a worker runs it (eagerly here): a due campaign closes."""
    app.config["CELERY_BROKER_URL"] = broker_url
    celery = workers.make_celery(app)
    campaign = make_campaign()
    later = (campaign.end_at + timedelta(minutes=1)).isoformat()
    result = celery.tasks["jobs.campaigns.close"].apply(args=(later,))
    assert result.get() == 1
    db.session.rollback()
    assert db.session.get(Campaign, campaign.id).state is CampaignState.FAILED
    celery.close()


def test_a_failing_job_fails_its_task(app, broker_url):
    app.config["CELERY_BROKER_URL"] = broker_url
    celery = workers.make_celery(app)
    result = celery.tasks["jobs.campaigns.close"].apply(args=("not a moment",))
    assert result.failed()
    with pytest.raises(ValueError):
        result.get()
    celery.close()


def test_no_celery_without_a_broker(app):
    app.config["CELERY_BROKER_URL"] = ""
    with pytest.raises(RuntimeError, match="CELERY_BROKER_URL"):
        workers.make_celery(app)


def test_settlement_work_stops_when_nothing_is_due(app):
    assert workers.work_settlement(utcnow().isoformat()) == (0, False)
