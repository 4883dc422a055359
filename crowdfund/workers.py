"""Production workers on Celery: every periodic job as a task, Celery beat as the clock.

The embedded default (`make run`, no broker) runs the jobs in-process with `flask jobs
run`. In production set `CELERY_BROKER_URL` — Redis (redis://127.0.0.1:6379/0) or
RabbitMQ (amqp://guest:guest@127.0.0.1:5672//) — and start, beside the web processes:

    celery -A crowdfund.workers worker --loglevel=INFO --concurrency=4
    celery -A crowdfund.workers beat --loglevel=INFO     # one beat for the whole site

Both build the app with `create_app()` (HEALTHFUND_ENV and the environment pick the
configuration, as for the web processes) and run every task inside its app context.

The tasks:
- `jobs.<name>` for every job of the registry (`crowdfund.jobs`), e.g.
  `jobs.campaigns.close`: runs that job once, as of now (or of `now`, an ISO moment);
- `settlement.work`: works due settlement items (`process_due_items`) until none is
  due; after `WORK_SECONDS` it queues itself again and returns, so a long settlement
  does not hold one worker slot for ever.

Beat sends each job at its `every` (`CELERY_BEAT_SECONDS` for the jobs that run on every
pass of `flask jobs run`); `settlement.charge` is sent as `settlement.work`. While a big
settlement runs, each beat's message starts one more `settlement.work` on a free slot,
so all the workers' slots end up working it side by side.

A message only says "there may be work". Exactly-once comes from the database: workers
claim rows (FOR UPDATE SKIP LOCKED on PostgreSQL) and every gateway call carries an
idempotency key, so a message delivered twice, lost, or sent by two beats does no harm;
a lost one is made up by the next beat. Messages are acknowledged after the task ran
(`task_acks_late`), so a worker killed mid-task has its message delivered again, and a
beat message no worker took before the next one is due expires.

This module is an edge, like `crowdfund.jobs`: it imports the packages; nothing imports it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init
from flask import Flask

from crowdfund.extensions import db
from crowdfund.jobs import registry, run_job
from crowdfund.models_base import utcnow

#: Seconds one `settlement.work` task works before handing the rest to a new message.
WORK_SECONDS = 60
WORK_TASK = "settlement.work"
#: Jobs that beat sends as another task: a task that drains the job's work.
DRAINED_BY = {"settlement.charge": WORK_TASK}


class JobFailed(Exception):
    """A job raised; `crowdfund.jobs.run_job` logged it, this marks the task failed."""


def job_task_name(job_name: str) -> str:
    return f"jobs.{job_name}"


def _moment(now: str | None) -> datetime | None:
    if not now:
        return None
    moment = datetime.fromisoformat(now)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run_named_job(name: str, now: str | None = None) -> int:
    """Run the registry's job `name` once, as of `now` (an ISO moment; default: now); its count."""
    job = next((j for j in registry() if j.name == name), None)
    if job is None:
        raise JobFailed(f"no job called {name}")
    outcome = run_job(job, _moment(now) or utcnow())
    if outcome.error:
        raise JobFailed(f"{name}: {outcome.error}")
    return outcome.count


def work_settlement(
    now: str | None = None, limit: int | None = None, *, seconds: float = WORK_SECONDS
) -> tuple[int, bool]:
    """Work due settlement items until none is due or `seconds` have passed, claiming `limit`
    at a time (the service's batch by default; smaller batches spread a small settlement
    over more workers). Returns (items worked, whether it stopped with work perhaps left).
    """
    from crowdfund.settlement.service import process_due_items

    moment = _moment(now)
    deadline = time.monotonic() + seconds
    total = 0
    while True:
        done = process_due_items(now=moment) if limit is None else process_due_items(now=moment, limit=limit)
        total += done
        if done == 0:
            return total, False
        if time.monotonic() >= deadline:
            return total, True


def beat_schedule(app: Flask) -> dict[str, dict[str, Any]]:
    """Celery beat's schedule, from the jobs registry: each job at its `every`."""
    every_pass = float(app.config["CELERY_BEAT_SECONDS"])
    schedule = {}
    for job in registry():
        seconds = job.every.total_seconds() or every_pass
        schedule[job.name] = {
            "task": DRAINED_BY.get(job.name, job_task_name(job.name)),
            "schedule": seconds,
            # Not taken before the next one is due: the next one will do.
            "options": {"expires": seconds},
        }
    return schedule


def make_celery(app: Flask) -> Celery:
    """The Celery app of `app`: its broker, one task per job, `settlement.work`, beat's schedule.

    Its tasks are its own (`shared=False`): a second Celery app (tests build one per Flask
    app) never runs the first one's tasks in the first one's app.
    """
    broker = app.config["CELERY_BROKER_URL"]
    if not broker:
        raise RuntimeError(
            "CELERY_BROKER_URL is not set: set it to redis://127.0.0.1:6379/0 (or an amqp:// URL) "
            "to run Celery workers, or run the jobs in-process with `flask jobs run`."
        )

    class AppTask(Task):
        """Runs inside an app context (a fresh database session per task)."""

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery("healthfund", broker=broker, task_cls=AppTask, set_as_current=False)
    celery.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(app),
    )

    for job in registry():
        _register_job(celery, job.name)

    @celery.task(name=WORK_TASK, bind=True, shared=False)
    def settlement_work(self: Task, now: str | None = None, limit: int | None = None) -> int:
        """Work due settlement items until none is due (see `work_settlement`)."""
        done, more = work_settlement(now, limit)
        if more:
            self.apply_async(args=(now, limit))
        return done

    @worker_process_init.connect(weak=False)
    def _own_connections(**_: Any) -> None:
        """A forked pool process never uses the connections its parent may have opened."""
        with app.app_context():
            db.engine.dispose(close=False)

    app.extensions["celery"] = celery
    return celery


def _register_job(celery: Celery, job_name: str) -> None:
    def run(now: str | None = None) -> int:
        return run_named_job(job_name, now)

    run.__name__ = run.__qualname__ = job_task_name(job_name).replace(".", "_").replace("-", "_")
    run.__doc__ = f"Run the job {job_name} once (as of `now`, an ISO moment; default: now)."
    celery.task(name=job_task_name(job_name), shared=False)(run)


_celery: Celery | None = None


def get_celery() -> Celery:
    """The Celery app of the app `create_app()` builds from the environment (made once)."""
    global _celery
    if _celery is None:
        from crowdfund import create_app

        _celery = make_celery(create_app())
    return _celery


def __getattr__(name: str) -> Any:
    """`celery -A crowdfund.workers` looks for `app` (then `celery`): built on first use only,
    so importing this module builds nothing."""
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
