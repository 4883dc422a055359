"""How fast we call the payment gateway: a limit shared by every process, and back-off.

Stripe allows 25 requests a second per endpoint and answers 429 beyond; a settlement of
thousands of pledges across several workers would reach that at once. Every call the
payment service makes to the gateway (`service._call_gateway`, `service._look_up`) goes
through `limiter_for(gateway).call(fn)`:

- Before the call it takes a token from a bucket refilled at `GATEWAY_RATE_LIMIT` tokens
  a second that holds one token, so calls are spaced at least 1/N s apart and no second
  ever sees more than N calls (a bigger bucket would let N + its size through in one
  second). The bucket's whole state is one number — when the next token is due (the
  generic cell rate algorithm) — and taking a token is reserving the next slot: the
  caller then sleeps until its slot, so callers queue instead of spinning.
- The bucket lives in Redis when `RATELIMIT_STORAGE_URI` (else `CELERY_BROKER_URL`) is a
  redis:// URL: one key per gateway, reserved by one Lua script, shared by every web and
  worker process (on the Redis server's clock). Otherwise it is per process, shared by
  its threads. If Redis cannot be reached the process falls back to its own bucket
  rather than stopping payments.
- When the gateway answers "rate limited" anyway (Stripe's 429, `failure_code`
  `rate_limited`: another client on the same account, or a lower limit than ours), the
  bucket is paused for an exponentially growing time with jitter — every process waits —
  and the call is made again, at most `GATEWAY_RATE_LIMIT_RETRIES` times; then the last
  answer is returned (a temporary failure that surely did nothing: the operation stays
  pending and is tried again later). Repeating it is safe: a 429 is refused before
  anything happens, and the idempotency key covers the rest.

The built-in sandbox lives in our own database and has no limit unless
`SANDBOX_RATE_LIMIT` sets one (to see how settlement behaves at Stripe's pace).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from flask import current_app

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The gateway's `failure_code` for "too many requests" (Stripe's 429).
RATE_LIMITED = "rate_limited"
EXTENSION = "payments.ratelimit"
MICROS = 1_000_000


class Bucket(Protocol):
    def reserve(self) -> float:
        """Take the next token: seconds to wait before using it (0 when it is due now)."""

    def pause(self, seconds: float) -> None:
        """No token before `seconds` from now (every user of the bucket waits)."""


def _interval_us(rate: float) -> int:
    """Microseconds between two tokens; 0 for no limit."""
    return int(-(-MICROS // rate)) if rate > 0 else 0


class LocalBucket:
    """A one-token bucket in this process, shared by its threads.

    `clock` is seconds on any steady scale (time.monotonic by default; tests pass a fake).
    Times are kept in whole microseconds so the spacing is exact.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = _interval_us(rate)
        self.clock = clock
        self._next_us = 0
        self._lock = threading.Lock()

    def _now_us(self) -> int:
        return round(self.clock() * MICROS)

    def reserve(self) -> float:
        with self._lock:
            now = self._now_us()
            slot = max(self._next_us, now)
            self._next_us = slot + self.interval
            return (slot - now) / MICROS

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next_us = max(self._next_us, self._now_us() + round(seconds * MICROS))


#: KEYS[1] the bucket; ARGV[1] µs between tokens; ARGV[2] now in µs ('' = the server's clock);
#: ARGV[3] 'reserve' or a pause in µs. Returns µs to wait. Lua numbers are doubles: µs
#: since 1970 are exact in them.
_SCRIPT = """
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[1])
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0')
local wait = 0
if ARGV[3] == 'reserve' then
  local slot = math.max(next_at, now)
  next_at = slot + interval
  wait = slot - now
else
  next_at = math.max(next_at, now + tonumber(ARGV[3]))
end
redis.call('SET', KEYS[1], string.format('%d', next_at), 'PX', math.floor((next_at - now) / 1000) + 60000)
return wait
"""


class RedisBucket:
    """The same bucket in Redis, shared by every process that uses the same key.

    By default it runs on the Redis server's clock, so processes on several machines agree;
    tests pass `clock` (seconds since 1970 on a fake clock) instead.
    """

    def __init__(self, client: Any, key: str, rate: float, clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.key = key
        self.interval = _interval_us(rate)
        self.clock = clock
        self._script = client.register_script(_SCRIPT)

    def _run(self, action: str) -> float:
        now = "" if self.clock is None else str(round(self.clock() * MICROS))
        return int(self._script(keys=[self.key], args=[self.interval, now, action])) / MICROS

    def reserve(self) -> float:
        return self._run("reserve")

    def pause(self, seconds: float) -> None:
        self._run(str(round(seconds * MICROS)))


class FallbackBucket:
    """A Redis bucket that falls back to a per-process one while Redis is unreachable."""

    def __init__(self, shared: RedisBucket, local: LocalBucket) -> None:
        self.shared = shared
        self.local = local

    def _either(self, method: str, *args: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return getattr(self.shared, method)(*args)
        except RedisError as exc:
            logger.warning("Gateway rate limit counted per process: Redis is unreachable (%s)", exc)
            return getattr(self.local, method)(*args)

    def reserve(self) -> float:
        return self._either("reserve")

    def pause(self, seconds: float) -> None:
        self._either("pause", seconds)


def is_rate_limited(result: Any) -> bool:
    """True for a gateway answer meaning "too many requests, nothing done"."""
    return getattr(result, "failure_code", None) == RATE_LIMITED


class GatewayLimiter:
    """Takes a token before each gateway call; pauses and calls again on a rate-limited answer."""

    def __init__(
        self,
        bucket: Bucket,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.bucket = bucket
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.jitter = jitter

    def delay(self, attempt: int) -> float:
        """The pause after the `attempt`-th rate-limited answer (0, 1, …): exponential, with
        "equal jitter" (between half and all of it) so processes do not retry in step."""
        ceiling = min(self.backoff_max, self.backoff * 2**attempt)
        return ceiling / 2 + self.jitter() * ceiling / 2

    def acquire(self) -> None:
        """Wait for our turn to call the gateway."""
        wait = self.bucket.reserve()
        if wait > 0:
            self.sleep(wait)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` (one gateway call) in our turn; again after a pause while the answer is "rate limited"."""
        attempt = 0
        while True:
            self.acquire()
            result = fn()
            if not is_rate_limited(result) or attempt >= self.retries:
                return result
            delay = self.delay(attempt)
            logger.info("The gateway is rate limiting us: pausing %.2f s", delay)
            self.bucket.pause(delay)
            attempt += 1


def redis_url(config: Any) -> str | None:
    """The Redis server to share the bucket in: the rate-limit store, else the Celery broker."""
    for name in ("RATELIMIT_STORAGE_URI", "CELERY_BROKER_URL"):
        url = config[name] or ""
        if url.startswith(("redis://", "rediss://")):
            return url
    return None


def build_limiter(config: Any, gateway_name: str, clock: Callable[[], float] | None = None) -> GatewayLimiter:
    """The limiter for one gateway from the app's config (see the module docstring)."""
    rate = float(config["SANDBOX_RATE_LIMIT" if gateway_name == "sandbox" else "GATEWAY_RATE_LIMIT"])
    local = LocalBucket(rate) if clock is None else LocalBucket(rate, clock)
    bucket: Bucket = local
    url = redis_url(config)
    if url and rate > 0:
        from redis import Redis

        key = f"{config['RATELIMIT_KEY_PREFIX']}:gateway-rate:{gateway_name}"
        bucket = FallbackBucket(RedisBucket(Redis.from_url(url), key, rate, clock), local)
    return GatewayLimiter(
        bucket,
        retries=int(config["GATEWAY_RATE_LIMIT_RETRIES"]),
        backoff=float(config["GATEWAY_BACKOFF_SECONDS"]),
        backoff_max=float(config["GATEWAY_BACKOFF_MAX_SECONDS"]),
    )


_build_lock = threading.Lock()


def limiter_for(gateway: Any) -> GatewayLimiter:
    """This app's limiter for `gateway` (one per gateway name, shared by the process's threads)."""
    limiters = current_app.extensions.setdefault(EXTENSION, {})
    name = getattr(gateway, "name", "gateway")
    found = limiters.get(name)
    if found is None:
        with _build_lock:
            found = limiters.get(name)
            if found is None:
                found = limiters[name] = build_limiter(current_app.config, name)
    return found
