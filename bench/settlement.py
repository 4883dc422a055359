"""Settlement throughput: charge every pledge of a closed campaign, with 1 and with 4 workers.

    .venv/bin/python bench/settlement.py [--pledges 100000] [--workers 1,4] [--seconds S]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--limited-pledges 1000] [--gateway-rate 25] [--limit 24] [--profile]
        [--synchronous-commit on|off]

Creates a database of its own (hf_bench_<random>) on the server named by --database-url
(or a temporary SQLite file for a sqlite:/// URL) and seeds it with fast SQL inserts: a
campaign that has closed successfully with --pledges pledges of ¥10, each by its own
backer with a card saved at the sandbox gateway. It opens the settlement
(`open_settlement`, timed on its own) and keeps that database as a template. Then:

1. for each count in --workers, a fresh copy of it is settled by that many worker
   processes, each running `process_due_items` until nothing is due, through the
   sandbox (which answers at once): prints pledges/s. With --seconds the workers stop
   after that long and the time for all of them is projected from the rate;
2. --limited-pledges pledges (a smaller campaign: at 25/s 1,000 take 40 s) are settled
   by --limited-workers processes through a fake gateway that answers "rate limited"
   (like Stripe's 429) to any request beyond --gateway-rate in the last second (counted
   in Redis, BENCH_REDIS_URL, so it sees every process), with our gateway rate limiter
   at --limit requests/s, its bucket shared in the same Redis: prints the time against
   the floor of n / gateway-rate seconds (target <= 1.1x) and how many requests the fake
   refused.

After each run it checks that every item is charged and each pledge charged once (one
succeeded charge per charged item, as many sandbox charges). `--profile` also runs one
worker under cProfile on a fresh copy and prints where its time goes. Every database it
made is dropped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import secrets
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from flash_crowd import BenchDatabase  # noqa: E402
from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PLEDGE = 1_000  # ¥10.00
CHUNK = 5_000
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# ---------------------------------------------------------------------------
# Databases: one seeded template, a fresh copy for every run
# ---------------------------------------------------------------------------


class Copy:
    """A copy of the template database for one run, removed by `drop()`."""

    def __init__(self, template: BenchDatabase, n: int) -> None:
        self.template = template
        if template.url.startswith("sqlite"):
            source = Path(make_url(template.url).database)
            target = source.with_name(f"copy{n}.db")
            shutil.copyfile(source, target)
            self.url = f"sqlite:///{target}"
            self._file: Path | None = target
            self._admin = None
        else:
            self._file = None
            self.name = f"{template.name}_c{n}"
            self._admin = create_engine(template.server_url, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}" TEMPLATE "{template.name}"'))
            self.url = make_url(template.url).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()
        if self._file is not None:
            self._file.unlink(missing_ok=True)


def make_app(database_url: str, **config: Any):
    from crowdfund import create_app

    return create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "PAYMENT_GATEWAY": "sandbox", "TESTING": False, **config}
    )


def _bulk(model, rows: list[dict], returning=None) -> list[int]:
    """Insert `rows` in chunks; the `returning` column of each, in order, when asked."""
    from crowdfund.extensions import db

    out: list[int] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        if returning is None:
            db.session.execute(insert(model), chunk)
        else:
            out += db.session.scalars(
                insert(model).returning(returning, sort_by_parameter_order=True), chunk
            ).all()
    return out


def seed(database_url: str, n: int) -> tuple[int, datetime]:
    """Schema; a reward campaign that has just closed with `n` pledges (each backer with a sandbox
    card); returns its id and the moment after its close."""
    from werkzeug.security import generate_password_hash

    from crowdfund.accounts.models import Membership, Organisation, OrganisationType, User
    from crowdfund.campaigns.lifecycle import close_campaign_if_due
    from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, FundingModel, HealthCategory
    from crowdfund.engine.models import Pledge, PledgeState
    from crowdfund.extensions import db
    from crowdfund.models import create_schema
    from crowdfund.models_base import utcnow
    from crowdfund.payments.models import GatewayCustomer, MethodStatus, PaymentMethod
    from crowdfund.payments.sandbox import CardBehaviour, SandboxCard, SandboxCustomer

    app = make_app(database_url)
    with app.app_context():
        create_schema()
        password = generate_password_hash("bench-password")
        owner = User(
            email="campaigner@bench.example", name="Campaigner", password_hash=password, session_token="o"
        )
        db.session.add(owner)
        db.session.flush()
        org = Organisation(
            type=OrganisationType.HEALTH_STARTUP,
            legal_name="Bench Devices Ltd",
            registration_number="BENCH-1",
            country="CN",
            created_by_id=owner.id,
        )
        db.session.add(org)
        db.session.flush()
        db.session.add(Membership(user_id=owner.id, organisation_id=org.id))
        now = utcnow()
        end = now - timedelta(minutes=5)
        campaign = Campaign(
            kind=CampaignKind.REWARD,
            organisation_id=org.id,
            created_by_id=owner.id,
            title="Settled at scale",
            slug="settled-at-scale",
            summary="Many small pledges.",
            category=HealthCategory.MEDICAL_DEVICES,
            currency="CNY",
            goal_amount=PLEDGE * n,
            funding_model=FundingModel.ALL_OR_NOTHING,
            start_at=end - timedelta(days=30),
            end_at=end,
            state=CampaignState.LIVE,
            launched_at=end - timedelta(days=30),
            raised_amount=PLEDGE * n,
            backer_count=n,
        )
        db.session.add(campaign)
        db.session.commit()

        user_ids = _bulk(
            User,
            [
                dict(
                    email=f"b{i}@bench.example",
                    name=f"Backer {i}",
                    password_hash=password,
                    session_token=f"s{i}",
                )
                for i in range(n)
            ],
            returning=User.id,
        )
        year = now.year + 5
        _bulk(
            SandboxCustomer, [dict(id=f"sbcus_b{u}", email=f"b{u}@x", name="B", user_id=u) for u in user_ids]
        )
        card = dict(
            brand="visa", last4="4242", exp_month=12, exp_year=year, authenticated=False, detached=False
        )
        _bulk(
            SandboxCard,
            [
                dict(id=f"sbpm_b{u}", customer_id=f"sbcus_b{u}", behaviour=CardBehaviour.SUCCEEDS, **card)
                for u in user_ids
            ],
        )
        _bulk(
            GatewayCustomer, [dict(user_id=u, gateway="sandbox", customer_id=f"sbcus_b{u}") for u in user_ids]
        )
        method_ids = _bulk(
            PaymentMethod,
            [
                dict(
                    user_id=u,
                    gateway="sandbox",
                    gateway_id=f"sbpm_b{u}",
                    brand="visa",
                    last4="4242",
                    exp_month=12,
                    exp_year=year,
                    is_default=True,
                    status=MethodStatus.USABLE,
                )
                for u in user_ids
            ],
            returning=PaymentMethod.id,
        )
        created = end - timedelta(days=1)
        _bulk(
            Pledge,
            [
                dict(
                    campaign_id=campaign.id,
                    user_id=u,
                    kind=CampaignKind.REWARD,
                    state=PledgeState.ACTIVE,
                    amount_amount=PLEDGE,
                    currency="CNY",
                    quantity=1,
                    extra_amount=0,
                    payment_method_id=m,
                    created_at=created,
                    updated_at=created,
                )
                for u, m in zip(user_ids, method_ids, strict=True)
            ],
        )
        db.session.commit()
        after_close = now
        close_campaign_if_due(campaign.id, after_close)
        campaign_id = campaign.id
        db.session.remove()
        db.engine.dispose()
    return campaign_id, after_close


def open_settlement(database_url: str, campaign_id: int, now: datetime) -> float:
    from crowdfund.extensions import db
    from crowdfund.settlement import service

    app = make_app(database_url)
    with app.app_context():
        started = time.perf_counter()
        service.open_settlement(campaign_id, now=now)
        took = time.perf_counter() - started
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        db.session.remove()
        db.engine.dispose()
    return took


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


def drain(now: datetime, deadline: float | None = None) -> int:
    """One worker: `process_due_items` until nothing is due (or `deadline` on the monotonic clock
    has passed); how many items it worked."""
    from crowdfund.settlement.service import process_due_items

    total = 0
    while done := process_due_items(now=now):
        total += done
        if deadline is not None and time.monotonic() >= deadline:
            break
    return total


def _process_worker(database_url: str, now: datetime, settings: dict, ready, start, results) -> None:
    app = make_app(database_url, **settings.get("config", {}))
    if settings.get("fake_rate"):
        app.extensions["payments.gateway"] = RateLimitedGateway(settings["fake_rate"], settings["fake_key"])
    with app.app_context():
        from crowdfund.extensions import db

        db.session.execute(select(1))  # import and connect before the clock starts
        db.session.rollback()
        ready.put(True)
        start.wait()
        seconds = settings.get("seconds")
        results.put(drain(now, time.monotonic() + seconds if seconds else None))


def run_processes(
    database_url: str, workers: int, now: datetime, settings: dict | None = None
) -> tuple[float, list[int]]:
    """`workers` processes draining the settlement side by side: (seconds from start to the last, items each)."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(database_url, now, settings or {}, ready, start, results))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    began = time.perf_counter()
    start.set()
    counts = [results.get() for _ in procs]
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join()
    return elapsed, counts


def check(database_url: str, campaign_id: int, n: int) -> str:
    """Every item charged, each pledge once: "ok" or what is wrong."""
    from crowdfund.extensions import db
    from crowdfund.payments.models import OperationKind, OperationState, PaymentOperation
    from crowdfund.payments.sandbox import SandboxCharge
    from crowdfund.settlement.models import ItemState, SettlementItem

    app = make_app(database_url)
    with app.app_context():
        states = dict(
            db.session.execute(
                select(SettlementItem.state, func.count()).group_by(SettlementItem.state)
            ).all()
        )
        succeeded = db.session.scalar(
            select(func.count()).where(
                PaymentOperation.kind == OperationKind.CHARGE,
                PaymentOperation.campaign_id == campaign_id,
                PaymentOperation.state == OperationState.SUCCEEDED,
            )
        )
        at_gateway = db.session.scalar(select(func.count(SandboxCharge.id)))
        db.session.remove()
        db.engine.dispose()
    charged = states.get(ItemState.CHARGED, 0)
    problems = []
    if charged != n:
        problems.append(f"items by state { ({s.value: c for s, c in states.items()}) }")
    if succeeded != charged or at_gateway != charged:
        problems.append(
            f"{succeeded} succeeded charges and {at_gateway} at the sandbox for {charged} items charged"
        )
    return "ok" if not problems else "; ".join(problems)


# ---------------------------------------------------------------------------
# The rate-limited fake gateway
# ---------------------------------------------------------------------------

#: KEYS[1] the requests of the last second (a sorted set), KEYS[2] / KEYS[3] counters of
#: requests let through / refused; ARGV[1] the limit, ARGV[2] a unique member. 1: let through.
_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1000000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('INCR', KEYS[3])
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""


class RateLimitedGateway:
    """The sandbox behind a wall: a request beyond `rate` in the last second (a sliding window
    in Redis, on its clock, shared by every worker process) is answered "rate limited"
    (Stripe's 429) and never reaches the sandbox."""

    name = "sandbox"  # the cards were saved at the sandbox; SANDBOX_RATE_LIMIT paces us

    def __init__(self, rate: int, key: str) -> None:
        from redis import Redis

        from crowdfund.payments.sandbox import SandboxGateway

        self.inner = SandboxGateway()
        self.rate = rate
        self.keys = [f"{key}:window", f"{key}:passed", f"{key}:refused"]
        self.redis = Redis.from_url(REDIS_URL)
        self._window = self.redis.register_script(_WINDOW)

    def _admit(self) -> bool:
        return bool(self._window(keys=self.keys, args=[self.rate, secrets.token_hex(8)]))

    def charge(self, **kwargs):
        from crowdfund.payments.gateway import GatewayResult
        from crowdfund.payments.models import ChargeOutcome

        if self._admit():
            return self.inner.charge(**kwargs)
        return GatewayResult(
            ChargeOutcome.TEMPORARY,
            None,
            "rate_limited",
            kwargs["amount"],
            "rate_limited",
            "Too many requests.",
            certainly_not_done=True,
        )

    def find(self, kind, **kwargs):
        from crowdfund.payments.gateway import GatewayUnavailable

        if self._admit():
            return self.inner.find(kind, **kwargs)
        raise GatewayUnavailable("Too many requests.")  # as the Stripe gateway's look-ups do

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def profile_one_worker(database_url: str, now: datetime, seconds: float | None) -> None:
    app = make_app(database_url)
    with app.app_context():
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        worked = drain(now, time.monotonic() + seconds if seconds else None)
        profiler.disable()
        elapsed = time.perf_counter() - began
    print(f"\nProfile of one worker: {worked} items in {elapsed:.1f} s (under cProfile)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)


def settle_through_sandbox(args, template: BenchDatabase, campaign_id: int, now: datetime) -> None:
    n = args.pledges
    for workers in args.workers:
        copy = Copy(template, workers)
        try:
            elapsed, counts = run_processes(copy.url, workers, now, {"seconds": args.seconds})
            verdict = check(copy.url, campaign_id, n) if sum(counts) >= n else "not all settled (time cap)"
        finally:
            copy.drop()
        done = sum(counts)
        rate = done / elapsed
        projected = "" if done >= n else f"; all {n} would take about {n / rate:,.0f} s"
        print(
            f"sandbox, {workers} worker process(es): {done} of {n} pledges in {elapsed:.1f} s = "
            f"{rate:,.0f} pledges/s{projected} (items per worker {counts}); check: {verdict}"
        )
    if args.profile:
        copy = Copy(template, 99)
        try:
            profile_one_worker(copy.url, now, args.seconds)
        finally:
            copy.drop()


def settle_through_rate_limited(args) -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    n = args.limited_pledges
    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except RedisError as exc:
        print(
            f"rate-limited run skipped: the fake gateway counts in Redis at {REDIS_URL}, unreachable ({exc})"
        )
        return
    key = f"hf-bench-{secrets.token_hex(4)}"
    database = BenchDatabase(args.database_url)
    try:
        campaign_id, now = seed(database.url, n)
        open_settlement(database.url, campaign_id, now)
        settings = {
            "fake_rate": args.gateway_rate,
            "fake_key": key,
            # Our limiter: one bucket in Redis shared by the worker processes.
            "config": {
                "SANDBOX_RATE_LIMIT": args.limit,
                "RATELIMIT_STORAGE_URI": REDIS_URL,
                "RATELIMIT_KEY_PREFIX": key,
            },
        }
        elapsed, counts = run_processes(database.url, args.limited_workers, now, settings)
        verdict = check(database.url, campaign_id, n)
    finally:
        database.drop()
        client = Redis.from_url(REDIS_URL)
        passed, refused = (int(client.get(f"{key}:{name}") or 0) for name in ("passed", "refused"))
        client.delete(*client.keys(f"{key}*"))
    floor = n / args.gateway_rate
    print(
        f"fake gateway at {args.gateway_rate}/s, our limiter at {args.limit:g}/s (shared in Redis), "
        f"{args.limited_workers} worker processes: {n} pledges in {elapsed:.1f} s; floor n/{args.gateway_rate} = "
        f"{floor:.1f} s; ratio {elapsed / floor:.3f} (target <= 1.1); requests let through {passed}, "
        f"refused as rate limited {refused}; check: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_SERVER)
    parser.add_argument("--pledges", type=int, default=100_000)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--limited-pledges", type=int, default=1_000, help="0 skips the rate-limited run")
    parser.add_argument("--gateway-rate", type=int, default=25, help="requests/s the fake gateway allows")
    parser.add_argument("--limit", type=float, default=24, help="our limiter's requests/s for that run")
    parser.add_argument("--limited-workers", type=int, default=4, help="worker processes for that run")
    parser.add_argument(
        "--seconds", type=float, help="stop the sandbox workers after this long and project the rate"
    )
    parser.add_argument("--profile", action="store_true", help="profile one worker with cProfile")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="PostgreSQL: off lets a commit return before its WAL is on disk (what fsync costs)",
    )
    args = parser.parse_args()
    if args.synchronous_commit == "off":
        os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c synchronous_commit=off".strip()

    if args.pledges:
        template = BenchDatabase(args.database_url)
        try:
            began = time.perf_counter()
            campaign_id, now = seed(template.url, args.pledges)
            seeded = time.perf_counter() - began
            opened = open_settlement(template.url, campaign_id, now)
            print(
                f"seeded {args.pledges} pledges in {seeded:.1f} s; open_settlement took {opened:.1f} s "
                f"({args.pledges / opened:,.0f} items/s)"
            )
            settle_through_sandbox(args, template, campaign_id, now)
        finally:
            template.drop()
    if args.limited_pledges:
        settle_through_rate_limited(args)


if __name__ == "__main__":
    main()
