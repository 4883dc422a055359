"""The gateway rate limiter: never more than N calls in any second, back-off on "rate limited",
one bucket shared through Redis. Time is a fake clock throughout: nothing here measures timing."""

from __future__ import annotations

import math
import os
import random
import uuid

import pytest

from crowdfund.payments import ratelimit
from crowdfund.payments.gateway import GatewayResult
from crowdfund.payments.models import ChargeOutcome, OperationKind, OperationState
from crowdfund.payments.ratelimit import (
    FallbackBucket,
    GatewayLimiter,
    LocalBucket,
    RedisBucket,
    build_limiter,
    limiter_for,
)
from tests.factories import charge, make_backer, make_campaign

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class FakeClock:
    """Seconds that move only when someone sleeps (or the test moves them)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def most_in_one_second(times: list[float]) -> int:
    """The largest number of `times` inside any window [t, t + 1 s) (to the microsecond the
    limiter counts in, so that float rounding of the fake clock does not blur the edges)."""
    times = sorted(round(t * 1_000_000) for t in times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1_000_000:
            j += 1
        best = max(best, i - j + 1)
    return best


def turn(clock: FakeClock, wait: float) -> float:
    """When a caller that reserved `wait` now calls, to the microsecond (as the bucket counts)."""
    return (round(clock() * 1_000_000) + round(wait * 1_000_000)) / 1_000_000


def test_the_window_counter_counts_a_second_half_open():
    assert most_in_one_second([0, 0.5, 0.999]) == 3
    assert most_in_one_second([0, 0.5, 1.0]) == 2
    assert most_in_one_second([]) == 0


def calls_at(limiter: GatewayLimiter, clock: FakeClock, n: int) -> list[float]:
    """Make `n` calls through `limiter` one after another; the fake time of each call."""
    times: list[float] = []

    def call():
        times.append(clock())
        return GatewayResult(ChargeOutcome.SUCCEEDED)

    for _ in range(n):
        limiter.call(call)
    return times


@pytest.mark.parametrize("rate", [20, 25, 7, 3.5])
def test_back_to_back_calls_never_exceed_the_rate_in_any_second(rate):
    clock = FakeClock()
    limiter = GatewayLimiter(LocalBucket(rate, clock), sleep=clock.sleep)
    times = calls_at(limiter, clock, 200)
    assert most_in_one_second(times) == math.ceil(rate)  # 3.5 a second: 4 in some seconds, 3 in others
    # …and it is not slower than it has to be: 200 calls take 199 intervals.
    assert times[-1] - times[0] == pytest.approx(199 / rate, abs=1e-3)


def test_callers_arriving_at_random_moments_never_exceed_the_rate():
    """Many callers (threads, processes) reserve turns as they arrive; each calls at its turn."""
    rng = random.Random(7)
    clock = FakeClock()
    bucket = LocalBucket(20, clock)
    called_at = []
    for _ in range(2_000):
        clock.now += rng.choice([0, 0, 0, 0.001, 0.01, 0.2, 1.5])  # bursts and quiet spells
        called_at.append(turn(clock, bucket.reserve()))
    assert most_in_one_second(called_at) == 20
    ordered = sorted(round(t * 1_000_000) for t in called_at)
    assert min(b - a for a, b in zip(ordered, ordered[1:], strict=False)) == 50_000  # µs: 1/20 s apart


def test_a_quiet_bucket_lets_the_next_call_through_at_once():
    clock = FakeClock()
    bucket = LocalBucket(20, clock)
    assert bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.05)
    clock.now += 10
    assert bucket.reserve() == 0


def test_no_limit_when_the_rate_is_zero():
    clock = FakeClock()
    limiter = GatewayLimiter(LocalBucket(0, clock), sleep=clock.sleep)
    calls_at(limiter, clock, 1_000)
    assert clock.sleeps == []


def rate_limited(times: list[float], clock: FakeClock, answers: list[GatewayResult]):
    """A gateway call answering `answers` in turn (the last one for ever), noting when it was made."""

    def call():
        times.append(clock())
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return call


RATE_LIMITED = GatewayResult(
    ChargeOutcome.TEMPORARY, status="rate_limited", failure_code="rate_limited", certainly_not_done=True
)
SUCCEEDED = GatewayResult(ChargeOutcome.SUCCEEDED, "ch_1", "succeeded")


def test_a_rate_limited_answer_backs_off_exponentially_then_succeeds():
    clock = FakeClock()
    limiter = GatewayLimiter(
        LocalBucket(20, clock), retries=5, backoff=0.5, backoff_max=8, sleep=clock.sleep, jitter=lambda: 1.0
    )
    times: list[float] = []
    result = limiter.call(rate_limited(times, clock, [RATE_LIMITED] * 3 + [SUCCEEDED]))
    assert result is SUCCEEDED
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps == pytest.approx([0.5, 1.0, 2.0])


def test_back_off_has_jitter_and_a_ceiling():
    limiter = GatewayLimiter(LocalBucket(20), backoff=0.5, backoff_max=8, jitter=random.Random(3).random)
    for attempt in range(10):
        ceiling = min(8, 0.5 * 2**attempt)
        delays = {limiter.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered: processes do not retry in step


def test_after_the_last_retry_the_rate_limited_answer_is_returned():
    clock = FakeClock()
    limiter = GatewayLimiter(LocalBucket(20, clock), retries=3, sleep=clock.sleep, jitter=lambda: 0.0)
    times: list[float] = []
    result = limiter.call(rate_limited(times, clock, [RATE_LIMITED]))
    assert result is RATE_LIMITED
    assert len(times) == 4  # the call and three retries, no more


def test_other_failures_are_not_retried():
    clock = FakeClock()
    limiter = GatewayLimiter(LocalBucket(20, clock), sleep=clock.sleep)
    declined = GatewayResult(ChargeOutcome.DECLINED, failure_code="card_declined")
    unavailable = GatewayResult(ChargeOutcome.TEMPORARY, failure_code="gateway_unavailable")
    for answer in (declined, unavailable, None):
        times: list[float] = []
        assert limiter.call(rate_limited(times, clock, [answer])) is answer
        assert len(times) == 1


def test_a_pause_holds_back_every_caller_of_the_bucket():
    clock = FakeClock()
    bucket = LocalBucket(20, clock)
    other = GatewayLimiter(bucket, sleep=clock.sleep)
    first = GatewayLimiter(bucket, sleep=clock.sleep, jitter=lambda: 1.0, backoff=2)
    times: list[float] = []
    start = clock.now
    first.call(rate_limited(times, clock, [RATE_LIMITED, SUCCEEDED]))
    assert times[1] - start == pytest.approx(2.0)
    bucket.pause(3)
    paused_at = clock.now
    calls_at(other, clock, 1)
    assert clock.now - paused_at == pytest.approx(3.0)


# --- through the payment service -------------------------------------------------------
def test_the_payment_service_calls_the_gateway_through_the_limiter(app, failing_gateway):
    """A charge that meets a 429 first waits, is made again with the same key, and succeeds once."""
    backer = make_backer()
    campaign = make_campaign()
    clock = FakeClock()
    limiter = GatewayLimiter(LocalBucket(20, clock), sleep=clock.sleep, backoff=1, jitter=lambda: 1.0)
    app.extensions[ratelimit.EXTENSION] = {"sandbox": limiter}
    failing_gateway.fail_next(OperationKind.CHARGE, ChargeOutcome.TEMPORARY, failure_code="rate_limited")

    op = charge(backer, campaign, 5_000)

    assert op.state is OperationState.SUCCEEDED
    keys = [key for kind, key in failing_gateway.calls if kind is OperationKind.CHARGE]
    assert keys == [op.idempotency_key, op.idempotency_key]
    assert clock.sleeps == [pytest.approx(1.0)]
    assert len(failing_gateway.inner.list_charges()) == 1


def test_the_sandbox_has_no_limit_by_default_and_other_gateways_do(app):
    config = dict(app.config, GATEWAY_RATE_LIMIT=20, RATELIMIT_STORAGE_URI="memory://", CELERY_BROKER_URL="")
    assert isinstance(build_limiter(config, "stripe").bucket, LocalBucket)
    assert build_limiter(config, "stripe").bucket.interval == 50_000
    assert build_limiter(config, "sandbox").bucket.interval == 0
    assert build_limiter(dict(config, SANDBOX_RATE_LIMIT=5), "sandbox").bucket.interval == 200_000


def test_the_bucket_is_in_redis_when_a_redis_url_is_configured(app):
    config = dict(app.config, GATEWAY_RATE_LIMIT=20, CELERY_BROKER_URL="")
    shared = build_limiter(dict(config, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/3"), "stripe")
    assert isinstance(shared.bucket, FallbackBucket)
    assert shared.bucket.shared.key == f"{app.config['RATELIMIT_KEY_PREFIX']}:gateway-rate:stripe"
    via_broker = build_limiter(
        dict(config, RATELIMIT_STORAGE_URI="memory://", CELERY_BROKER_URL="redis://127.0.0.1:6379/1"),
        "stripe",
    )
    assert isinstance(via_broker.bucket, FallbackBucket)
    amqp = build_limiter(
        dict(config, RATELIMIT_STORAGE_URI="memory://", CELERY_BROKER_URL="amqp://guest@127.0.0.1//"),
        "stripe",
    )
    assert isinstance(amqp.bucket, LocalBucket)


def test_one_limiter_per_gateway_in_an_app(app):
    app.config["GATEWAY_RATE_LIMIT"] = 20

    class Named:
        def __init__(self, name):
            self.name = name

    assert limiter_for(Named("stripe")) is limiter_for(Named("stripe"))
    assert limiter_for(Named("stripe")) is not limiter_for(Named("sandbox"))


# --- shared in Redis ---------------------------------------------------------------------
@pytest.fixture
def redis_client():
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except RedisError as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    yield client
    client.close()


def test_two_processes_share_one_bucket_in_redis(redis_client):
    """Two limiters with their own Redis connections (as two processes have) take turns from one bucket."""
    from redis import Redis

    key = f"test:gateway-rate:{uuid.uuid4().hex}"
    clock = FakeClock()
    other_connection = Redis.from_url(REDIS_URL)
    a = RedisBucket(redis_client, key, 20, clock)
    b = RedisBucket(other_connection, key, 20, clock)
    try:
        assert a.reserve() == 0
        assert b.reserve() == pytest.approx(0.05)  # b waits for the turn a just took
        rng = random.Random(11)
        called_at = []
        for _ in range(500):
            clock.now += rng.choice([0, 0, 0.001, 0.02, 0.3])
            bucket = rng.choice([a, b])
            called_at.append(turn(clock, bucket.reserve()))
        assert most_in_one_second(called_at) == 20
        a.pause(5)
        assert b.reserve() == pytest.approx(max(5.0, max(called_at) + 0.05 - clock.now))
    finally:
        redis_client.delete(key)
        other_connection.close()


def test_the_redis_bucket_uses_the_server_clock_by_default(redis_client):
    key = f"test:gateway-rate:{uuid.uuid4().hex}"
    bucket = RedisBucket(redis_client, key, 10)
    try:
        waits = [bucket.reserve() for _ in range(5)]
        # Reserved back to back: each waits about 0.1 s more than the one before.
        assert waits[0] < 0.05
        assert waits[4] == pytest.approx(0.4, abs=0.05)
        assert redis_client.pttl(key) > 0  # the key expires on its own
    finally:
        redis_client.delete(key)


def test_an_unreachable_redis_falls_back_to_a_bucket_in_the_process():
    from redis import Redis

    clock = FakeClock()
    unreachable = RedisBucket(
        Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2), "k", 20, clock
    )
    bucket = FallbackBucket(unreachable, LocalBucket(20, clock))
    assert bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.05)
