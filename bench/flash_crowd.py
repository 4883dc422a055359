"""Flash crowd: many backers pledge for one limited reward at the same moment.

    .venv/bin/python bench/flash_crowd.py [--clients 200] [--units 100] [--workers 4] [--threads 8]

Creates a database of its own (hf_bench_<random>) on the PostgreSQL server named by
--database-url (or a temporary SQLite file for a sqlite:/// URL), seeds one live reward
campaign whose tier has --units units, and --clients backers, each with a saved sandbox
card and a personal API token. It then starts the app under gunicorn, and:

1. fires the same number of concurrent requests at GET /api/v1/ping (no database): the
   hello-world baseline of this server on this machine;
2. releases --clients threads at once, each POSTing /api/v1/pledges for one unit
   (--requests-per-client times, each with its own Idempotency-Key);

and prints requests per second, p50/p99 latency, accepted / sold-out / other counts,
and `oversold: N`, checked in the database (units claimed beyond the limit, by the
tier's counter and by the active pledges). N must be 0. Gunicorn is stopped and the
database dropped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from crowdfund.config import normalise_database_url  # noqa: E402

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TIER_PRICE = 30_000  # ¥300.00


# ---------------------------------------------------------------------------
# The database of the run
# ---------------------------------------------------------------------------


class BenchDatabase:
    """A fresh database for one run, removed by `drop()`."""

    def __init__(self, server_url: str):
        self.server_url = normalise_database_url(server_url)
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._admin = None
        self.name = f"hf_bench_{secrets.token_hex(5)}"
        if self.server_url.startswith("sqlite"):
            self._tmpdir = tempfile.TemporaryDirectory(prefix="hf_bench_")
            self.url = f"sqlite:///{Path(self._tmpdir.name) / 'bench.db'}"
        else:
            url = make_url(self.server_url)
            self._admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = url.set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()


@dataclass
class Seed:
    campaign_id: int
    campaign_slug: str
    tier_id: int
    tokens: list[str]


def seed(database_url: str, clients: int, units: int) -> Seed:
    """Schema, one live reward campaign with a tier of `units`, `clients` backers with card and token."""
    from werkzeug.security import generate_password_hash

    from crowdfund import create_app
    from crowdfund.accounts.models import Membership, Organisation, OrganisationType, User
    from crowdfund.api.service import create_token
    from crowdfund.campaigns.models import (
        Campaign,
        CampaignKind,
        CampaignState,
        FundingModel,
        HealthCategory,
        RewardTier,
    )
    from crowdfund.extensions import db
    from crowdfund.models import create_schema
    from crowdfund.models_base import utcnow
    from crowdfund.payments.service import save_payment_method

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "PAYMENT_GATEWAY": "sandbox", "TESTING": False}
    )
    with app.app_context():
        create_schema()
        password = generate_password_hash(secrets.token_hex(8))
        owner = User(
            email="campaigner@bench.example",
            name="Campaigner",
            password_hash=password,
            session_token=secrets.token_hex(16),
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
        campaign = Campaign(
            kind=CampaignKind.REWARD,
            organisation_id=org.id,
            created_by_id=owner.id,
            title="Hot pulse oximeter",
            slug="hot-pulse-oximeter",
            summary="Everybody wants one.",
            category=HealthCategory.MEDICAL_DEVICES,
            currency="CNY",
            goal_amount=TIER_PRICE * units,
            funding_model=FundingModel.ALL_OR_NOTHING,
            start_at=now - timedelta(hours=1),
            end_at=now + timedelta(days=30),
            state=CampaignState.LIVE,
            launched_at=now - timedelta(hours=1),
        )
        campaign.tiers.append(
            RewardTier(position=0, title="Launch edition", price_amount=TIER_PRICE, quantity_limit=units)
        )
        db.session.add(campaign)
        db.session.commit()
        result = Seed(campaign.id, campaign.slug, campaign.tiers[0].id, [])

        expiry = f"12/{(now.year + 5) % 100:02d}"
        for i in range(clients):
            user = User(
                email=f"backer{i}@bench.example",
                name=f"Backer {i}",
                password_hash=password,
                session_token=secrets.token_hex(16),
            )
            db.session.add(user)
            db.session.commit()
            save_payment_method(user, {"number": "4242424242424242", "expiry": expiry, "cvc": "123"})
            result.tokens.append(create_token(user, "flash crowd").secret)
        db.session.remove()
        db.engine.dispose()
    return result


def audit(database_url: str, tier_id: int, campaign_id: int) -> dict[str, int]:
    """What the database says after the crowd: units claimed, active pledges, counters."""
    from crowdfund.campaigns.models import Campaign, RewardTier
    from crowdfund.engine.models import COUNTED_STATES, Pledge

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            limit, claimed = conn.execute(
                select(RewardTier.quantity_limit, RewardTier.claimed).where(RewardTier.id == tier_id)
            ).one()
            active_units, active_pledges, active_amount, backers = conn.execute(
                select(
                    func.coalesce(func.sum(Pledge.quantity), 0),
                    func.count(Pledge.id),
                    func.coalesce(func.sum(Pledge.amount_amount), 0),
                    func.count(func.distinct(Pledge.user_id)),
                ).where(Pledge.tier_id == tier_id, Pledge.state.in_(COUNTED_STATES))
            ).one()
            raised, backer_count = conn.execute(
                select(Campaign.raised_amount, Campaign.backer_count).where(Campaign.id == campaign_id)
            ).one()
    finally:
        engine.dispose()
    return {
        "limit": limit,
        "claimed": claimed,
        "active_units": int(active_units),
        "active_pledges": active_pledges,
        "active_amount": int(active_amount),
        "distinct_backers": backers,
        "raised": raised,
        "backer_count": backer_count,
    }


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving app:app on a free local port, in its own process group."""

    def __init__(self, database_url: str, workers: int, threads: int, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_hex(32),
            "HEALTHFUND_ENV": "production",
            "RATELIMIT_ENABLED": "0",
            "PAYMENT_GATEWAY": "sandbox",
        }
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "-k",
                "gthread",
                "--threads",
                str(threads),
                "-b",
                f"127.0.0.1:{self.port}",
                "--backlog",
                "2048",
                "--keep-alive",
                "30",
                "app:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = request("GET", self.port, "/api/v1/ping")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is gunicorn's quick shutdown (SIGTERM would wait for keep-alive clients).
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def request(
    method: str,
    port: int,
    path: str,
    body: dict | None = None,
    headers: dict | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = (
            {"Content-Type": "application/json", **(headers or {})} if payload else dict(headers or {})
        )
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


# ---------------------------------------------------------------------------
# The crowd
# ---------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: When the last answer of each outcome arrived, in seconds after the crowd was released.
    last_answer: dict[str, float] = field(default_factory=dict)
    started: float = 0.0

    def record(self, latency_ms: float, outcome: str) -> None:
        self.latencies_ms.append(latency_ms)
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
        self.last_answer[outcome] = time.perf_counter() - self.started

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(p) - 1]

    def line(self) -> str:
        rate = self.count / self.seconds if self.seconds else 0.0
        return (
            f"{self.name:<11} {self.count:>6} requests in {self.seconds:6.2f} s = {rate:8.1f} req/s   "
            f"p50 {self.percentile(50):7.1f} ms   p99 {self.percentile(99):7.1f} ms"
        )


def run_crowd(name: str, clients: int, per_client: int, call) -> Phase:
    """`clients` threads, released together by a barrier, each running `call(i, j, conn)` per request."""
    phase = Phase(name)
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        try:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:  # the run was interrupted before the start
                return
            for j in range(per_client):
                start = time.perf_counter()
                try:
                    outcome = call(i, j, conn)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
                    outcome = f"connection error: {type(exc).__name__}"
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    phase.record(elapsed, outcome)
        finally:
            conn.close()

    # Daemon threads: an interrupted run stops at once instead of waiting for its clients.
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    phase.started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    phase.seconds = time.perf_counter() - phase.started
    return phase


PORT = 0


def main(argv: list[str] | None = None) -> int:
    global PORT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER,
        help="PostgreSQL server to create the run's own database on (or sqlite:///)",
    )
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument("--units", type=int, default=100, help="units in the hot tier (default 100)")
    parser.add_argument(
        "--requests-per-client", type=int, default=1, help="pledges each client tries (default 1)"
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    args = parser.parse_args(argv)
    # A plain `kill` runs the clean-up below too: stop gunicorn, drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if min(args.clients, args.units, args.requests_per_client, args.workers, args.threads) < 1:
        parser.error("every number must be at least 1")

    database = BenchDatabase(args.database_url)
    server: Server | None = None
    logdir = tempfile.TemporaryDirectory(prefix="hf_bench_log_")
    try:
        t0 = time.perf_counter()
        data = seed(database.url, args.clients, args.units)
        print(
            f"seeded {args.clients} backers (card + token each) and a tier of {args.units} units "
            f"in {time.perf_counter() - t0:.1f} s; database {database.name}"
        )

        server = Server(database.url, args.workers, args.threads, Path(logdir.name) / "gunicorn.log")
        PORT = server.port
        server.wait_ready()
        print(
            f"gunicorn: {args.workers} workers x {args.threads} threads (gthread) on 127.0.0.1:{PORT}; "
            f"{os.cpu_count()} CPUs"
        )

        # Warm up every worker's database pool with reads, so the crowd measures steady state.
        run_crowd(
            "warm-up",
            min(args.clients, args.workers * args.threads),
            3,
            lambda i, j, conn: str(
                request("GET", PORT, f"/api/v1/campaigns/{data.campaign_slug}", conn=conn)[0]
            ),
        )

        hello = run_crowd(
            "hello",
            args.clients,
            args.requests_per_client,
            lambda i, j, conn: str(request("GET", PORT, "/api/v1/ping", conn=conn)[0]),
        )

        def pledge(i: int, j: int, conn) -> str:
            status, body = request(
                "POST",
                PORT,
                "/api/v1/pledges",
                body={"campaign": data.campaign_id, "tier_id": data.tier_id, "quantity": 1},
                headers={"Authorization": f"Bearer {data.tokens[i]}", "Idempotency-Key": f"flash-{i}-{j}"},
                conn=conn,
            )
            if status == 201:
                return "accepted"
            try:
                return json.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                return f"http {status}"

        pledges = run_crowd("pledges", args.clients, args.requests_per_client, pledge)
        facts = audit(database.url, data.tier_id, data.campaign_id)
    except BaseException:
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        database.drop()
        logdir.cleanup()

    accepted = pledges.statuses.get("accepted", 0)
    sold_out = pledges.statuses.get("sold_out", 0)
    others = {k: v for k, v in pledges.statuses.items() if k not in ("accepted", "sold_out")}
    oversold = max(
        0,
        facts["claimed"] - facts["limit"],
        facts["active_units"] - facts["limit"],
        accepted - facts["limit"],
    )
    consistent = (
        facts["claimed"] == facts["active_units"] == accepted
        and facts["raised"] == facts["active_amount"]
        and facts["backer_count"] == facts["distinct_backers"]
    )
    ping_rate = hello.count / hello.seconds if hello.seconds else 0.0
    pledge_rate = pledges.count / pledges.seconds if pledges.seconds else 0.0
    hello_others = {k: v for k, v in hello.statuses.items() if k != "200"}

    print()
    print(hello.line() + (f"   errors {hello_others}" if hello_others else ""))
    print(pledges.line())
    print(f"pledges/second: {pledge_rate:.1f} (pledge requests answered, accepted or sold out)")
    if "accepted" in pledges.last_answer:
        print(
            f"sold out after: {pledges.last_answer['accepted']:.2f} s (when the last accepted pledge was answered)"
        )
    print(
        f"ratio: pledge requests/s are {pledge_rate / ping_rate:.2f} x hello-world requests/s"
        if ping_rate
        else "ratio: n/a"
    )
    print(f"accepted: {accepted}")
    print(f"sold out: {sold_out}")
    print(f"other errors: {sum(others.values())}" + (f" {others}" if others else ""))
    print(
        f"tier: limit {facts['limit']}, claimed {facts['claimed']}, active pledges {facts['active_pledges']} "
        f"({facts['active_units']} units); campaign raised {facts['raised']} minor units, "
        f"{facts['backer_count']} backers; counters {'consistent' if consistent else 'INCONSISTENT'}"
    )
    print(f"oversold: {oversold}")
    return 0 if oversold == 0 and consistent else 1


if __name__ == "__main__":
    sys.exit(main())
