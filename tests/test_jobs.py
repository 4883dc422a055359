"""The jobs registry: every package's jobs in order, `flask jobs tick` (and its old name), the loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crowdfund import jobs
from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from tests.factories import make_campaign


def _tick(app, *args: str):
    return app.test_cli_runner().invoke(args=["jobs", "tick", *args])


def test_the_registry_lists_every_package_job_once_in_order():
    names = [job.name for job in jobs.registry()]
    assert names == [
        "campaigns.launch",
        "campaigns.close",
        "engine.finish-donations",
        "payments.settle-stale",
        "settlement.open",
        "settlement.charge",
        "settlement.finalise",
        "equity.lapse",
        "equity.issue",
        "loans.open",
        "loans.repayments",
        "loans.late",
        "patient_aid.pay",
        "patient_aid.end",
        "patient_aid.surplus",
    ]
    assert all(isinstance(job.every, timedelta) for job in jobs.registry())


def test_tick_as_of_a_given_moment_launches_and_closes(app):
    start = utcnow() + timedelta(days=3)
    waiting = make_campaign(state=CampaignState.APPROVED, start_at=start, days=10)
    ending = make_campaign(tiers=[], start_at=utcnow() - timedelta(days=1), days=5)
    later = (start + timedelta(days=5)).replace(tzinfo=None).isoformat(timespec="minutes")

    now_result = _tick(app)
    assert now_result.exit_code == 0, now_result.output
    assert "launched: 0" in now_result.output and "closed: 0" in now_result.output

    result = _tick(app, "--now", later)
    assert result.exit_code == 0, result.output
    assert "launched: 1" in result.output and "closed: 1" in result.output
    db.session.expire_all()
    assert waiting.state is CampaignState.LIVE
    assert waiting.launched_at == datetime.fromisoformat(later).replace(tzinfo=UTC)
    assert ending.state is CampaignState.FAILED


def test_only_runs_the_named_job(app):
    make_campaign(state=CampaignState.APPROVED, start_at=utcnow() - timedelta(minutes=1))
    make_campaign(tiers=[], start_at=utcnow() - timedelta(days=40), days=30)
    result = _tick(app, "--only", "campaigns.close")
    assert result.exit_code == 0, result.output
    assert "closed: 1" in result.output and "launched" not in result.output
    states = sorted(s.value for s in db.session.scalars(select(Campaign.state)))
    assert states == ["approved", "failed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--only", "campaigns.nap"], "no job called campaigns.nap"), (["--now", "tomorrow"], "not a date")],
)
def test_bad_options_are_refused_with_a_message(app, args, message):
    result = _tick(app, *args)
    assert result.exit_code == 2 and message in result.output


def test_campaigns_tick_is_the_same_command(app):
    make_campaign(state=CampaignState.APPROVED, start_at=utcnow() - timedelta(minutes=1))
    result = app.test_cli_runner().invoke(args=["campaigns", "tick"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == [j.name for j in jobs.registry()]
    assert "launched: 1" in result.output


def test_a_failing_job_is_reported_and_the_others_still_run(app):
    seen = []

    def broken(now):
        raise RuntimeError("disk full")

    def counting(now):
        seen.append(now)
        return 2

    moment = utcnow()
    outcomes = jobs.run_jobs(
        moment, (jobs.Job("a.broken", "x", broken), jobs.Job("b.counting", "y", counting))
    )
    assert [(o.job.name, o.count, o.error) for o in outcomes] == [
        ("a.broken", 0, "RuntimeError: disk full"),
        ("b.counting", 2, None),
    ]
    assert seen == [moment]
    assert "failed (RuntimeError: disk full)" in outcomes[0].line()


def test_the_loop_runs_each_job_at_most_once_per_its_interval(app):
    runs = []
    every_pass = jobs.Job("a.fast", "ran", lambda now: runs.append(("fast", now)) or 1)
    each_minute = jobs.Job("b.slow", "ran", lambda now: runs.append(("slow", now)) or 1, timedelta(minutes=1))
    loop = jobs.Loop((every_pass, each_minute))
    t0 = utcnow()
    for seconds in (0, 5, 10, 60, 65):
        loop.run_pass(t0 + timedelta(seconds=seconds))
    assert [name for name, _ in runs].count("fast") == 5
    assert [when - t0 for name, when in runs if name == "slow"] == [timedelta(0), timedelta(seconds=60)]


def test_jobs_list_shows_every_job(app):
    result = app.test_cli_runner().invoke(args=["jobs", "list"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == [j.name for j in jobs.registry()]
