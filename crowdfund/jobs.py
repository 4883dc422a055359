"""Periodic jobs: one ordered registry of every package's jobs.

A package with work that time makes due lists it in its own `jobs.py` as `JOBS`: tuples
of (name, what the count means, function of `now`, least seconds between runs), plain
data so that no package imports this edge module. `registry()` makes them `Job`s, in a
fixed order (campaigns launch and close before
the engine and payments tidy up). A job takes `now` and returns how many things it moved.
Every job must be safe to run at any moment and in two processes at once — it locks and
re-checks each row it moves — so a run with nothing due is cheap and harmless, and an
unlucky failure is simply retried by the next run.

`flask jobs tick` runs every job once (what cron runs every minute; `--now` runs them as
of another moment, for demos and tests; `--only` picks jobs by name). `flask jobs run`
runs them in a loop, each job at most once per its `every` — what `make run` starts
beside the web server. `flask campaigns tick` is the older name of `flask jobs tick`.

This module is an edge: it imports the packages; no package imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from crowdfund.extensions import db
from crowdfund.models_base import utcnow


@dataclass(frozen=True)
class Job:
    """One periodic job: `run(now)` does what is due at `now` and returns how many things it moved."""

    #: What `--only` takes, "<package>.<verb>": "campaigns.launch".
    name: str
    #: What the count means, printed before it: "launched".
    did: str
    run: Callable[[datetime], int]
    #: In `flask jobs run`, the least time between two runs of this job (zero: every pass).
    every: timedelta = timedelta(0)


@dataclass
class Outcome:
    job: Job
    count: int = 0
    #: "ExceptionType: message" when the job raised; the other jobs still ran.
    error: str | None = None

    def line(self) -> str:
        result = f"failed ({self.error})" if self.error else f"{self.job.did}: {self.count}"
        return f"{self.job.name:<28} {result}"


def registry() -> tuple[Job, ...]:
    """Every package's jobs, in the order they run."""
    from crowdfund.campaigns import jobs as campaigns
    from crowdfund.engine import jobs as engine
    from crowdfund.equity import jobs as equity
    from crowdfund.loans import jobs as loans
    from crowdfund.patient_aid import jobs as patient_aid
    from crowdfund.payments import jobs as payments
    from crowdfund.settlement import jobs as settlement

    return tuple(
        Job(name, did, run, timedelta(seconds=every))
        for name, did, run, every in (
            *campaigns.JOBS,
            *engine.JOBS,
            *payments.JOBS,
            *settlement.JOBS,
            *equity.JOBS,
            *loans.JOBS,
            *patient_aid.JOBS,
        )
    )


def select_jobs(only: Iterable[str] = ()) -> tuple[Job, ...]:
    """The jobs named in `only` (all of them when it is empty), in registry order."""
    jobs = registry()
    wanted = set(only)
    unknown = wanted - {job.name for job in jobs}
    if unknown:
        raise click.BadParameter(
            f"no job called {', '.join(sorted(unknown))}; the jobs are {', '.join(j.name for j in jobs)}",
            param_hint="--only",
        )
    return tuple(job for job in jobs if not wanted or job.name in wanted)


def run_job(job: Job, now: datetime) -> Outcome:
    """Run one job; an exception is logged and reported in the outcome, never raised."""
    try:
        return Outcome(job, job.run(now))
    except Exception as exc:  # one failing job must not stop the others (or the loop)
        current_app.logger.exception("job %s failed", job.name)
        return Outcome(job, error=f"{type(exc).__name__}: {exc}")


def run_jobs(now: datetime | None = None, jobs: Iterable[Job] | None = None) -> list[Outcome]:
    """Run `jobs` (every registered job by default) once, in order, all with the same `now`."""
    now = now or utcnow()
    return [run_job(job, now) for job in (registry() if jobs is None else jobs)]


@dataclass
class Loop:
    """What `flask jobs run` repeats: each pass runs the jobs whose `every` has passed."""

    jobs: tuple[Job, ...]
    last_run: dict[str, datetime] = field(default_factory=dict)

    def due(self, now: datetime) -> list[Job]:
        return [
            job
            for job in self.jobs
            if job.name not in self.last_run or now - self.last_run[job.name] >= job.every
        ]

    def run_pass(self, now: datetime) -> list[Outcome]:
        outcomes = []
        for job in self.due(now):
            outcomes.append(run_job(job, now))
            self.last_run[job.name] = now
        db.session.remove()  # no transaction (or snapshot) held while the loop sleeps
        return outcomes


def _moment(_ctx, _param, value: str | None) -> datetime | None:
    """`--now`: an ISO date and time, UTC unless it names another offset."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date and time like 2027-01-31T12:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


jobs_cli = AppGroup("jobs", help="Periodic jobs of every package: launch, close, tidy up.")


@jobs_cli.command("list")
def list_command() -> None:
    """Show every job, in the order they run."""
    for job in registry():
        every = f"every {int(job.every.total_seconds())} s" if job.every else "every pass"
        click.echo(f"{job.name:<28} {job.did:<24} {every}")


@click.command("tick")
@with_appcontext
@click.option(
    "--now", "now", callback=_moment, metavar="2027-01-31T12:00", help="Run as of this moment (UTC)."
)
@click.option("--only", "only", multiple=True, metavar="NAME", help="Run only this job (repeatable).")
def tick_command(now: datetime | None, only: tuple[str, ...]) -> None:
    """Run every job once (or only those named) and print what each did."""
    outcomes = run_jobs(now, select_jobs(only))
    for outcome in outcomes:
        click.echo(outcome.line())
    if any(o.error for o in outcomes):
        raise SystemExit(1)


@jobs_cli.command("run")
@click.option(
    "--every",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between passes.",
)
def run_command(every: float) -> None:
    """Run the jobs for ever, one pass every few seconds (stop with Ctrl-C); prints what moved."""
    loop = Loop(registry())
    click.echo(f"Running {len(loop.jobs)} jobs every {every:g} s: {', '.join(j.name for j in loop.jobs)}")
    try:
        while True:
            for outcome in loop.run_pass(utcnow()):
                if outcome.count or outcome.error:
                    click.echo(f"{utcnow():%H:%M:%S} {outcome.line()}")
            time.sleep(every)
    except KeyboardInterrupt:
        pass


jobs_cli.add_command(tick_command)

#: `flask campaigns tick`: the name cron entries used before the registry existed.
campaigns_cli = AppGroup("campaigns", help="Campaign commands (`tick` is `flask jobs tick`).")
campaigns_cli.add_command(tick_command)


def cli_groups() -> tuple[AppGroup, ...]:
    return (jobs_cli, campaigns_cli)
