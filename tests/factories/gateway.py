"""A payment gateway that fails on cue, for tests about what happens when the gateway misbehaves.

`FailingGateway` wraps the configured gateway (the sandbox, or Stripe in Stripe mode) and
passes every call through unless told otherwise:

- `fail_next(kind, outcome)` answers the next charge/refund/payout with that outcome
  without reaching the real gateway (a TEMPORARY answer says it surely did nothing);
- `unavailable()` makes every call raise `GatewayUnavailable` until `available()`;
- `crash_after(kind)` / `crash_after_charge()` let the next call reach the real gateway,
  then raise `ProcessDied` as if the process was killed before it could record the
  answer (the answer is kept in `crashed`);
- `crash_before(kind)` raises `ProcessDied` before the call reaches the gateway.

Install it with the `failing_gateway` fixture (tests/conftest.py), which puts it in
`app.extensions["payments.gateway"]`, the override `payments.service.get_gateway` honours.
`calls` lists `(kind, idempotency key)` for every charge, refund and payout asked of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app

from crowdfund.payments.gateway import GatewayResult, GatewayUnavailable
from crowdfund.payments.models import ChargeOutcome, OperationKind

EXTENSION = "payments.gateway"


class ProcessDied(Exception):
    """Stands for the process being killed at that point."""


class FailingGateway:
    def __init__(self, inner: Any | None = None):
        self._inner = inner
        self._cues: list[tuple[OperationKind, str, Any]] = []
        self._down = False
        self.calls: list[tuple[OperationKind, str]] = []
        self.crashed: list[GatewayResult] = []

    # --- cues ------------------------------------------------------------------------------
    def fail_next(
        self,
        kind: OperationKind,
        outcome: ChargeOutcome = ChargeOutcome.TEMPORARY,
        *,
        failure_code: str | None = None,
        failure_message: str = "Failed on cue.",
    ) -> FailingGateway:
        """Answer the next `kind` call with `outcome`; the real gateway never sees it."""
        result = GatewayResult(
            outcome,
            status=outcome.value,
            failure_code=failure_code or outcome.value,
            failure_message=failure_message,
            certainly_not_done=outcome is ChargeOutcome.TEMPORARY,
        )
        self._cues.append((kind, "answer", result))
        return self

    def crash_after(self, kind: OperationKind) -> FailingGateway:
        """The next `kind` call goes through, then the process "dies" before recording it."""
        self._cues.append((kind, "crash_after", None))
        return self

    def crash_after_charge(self) -> FailingGateway:
        return self.crash_after(OperationKind.CHARGE)

    def crash_before(self, kind: OperationKind) -> FailingGateway:
        """The process "dies" just before the next `kind` call reaches the gateway."""
        self._cues.append((kind, "crash_before", None))
        return self

    def unavailable(self) -> FailingGateway:
        """Every call raises GatewayUnavailable until `available()`."""
        self._down = True
        return self

    def available(self) -> FailingGateway:
        self._down = False
        return self

    # --- the gateway protocol --------------------------------------------------------------
    @property
    def inner(self) -> Any:
        """The gateway this one wraps: the one the app would use without the override."""
        if self._inner is None:
            from crowdfund.payments.service import get_gateway

            extensions = current_app.extensions
            mine = extensions.pop(EXTENSION, None)
            try:
                self._inner = get_gateway()
            finally:
                if mine is not None:
                    extensions[EXTENSION] = mine
        return self._inner

    @property
    def name(self) -> str:
        return self.inner.name

    def charge(self, **kwargs) -> GatewayResult:
        return self._money_call(OperationKind.CHARGE, self.inner.charge, kwargs)

    def refund(self, **kwargs) -> GatewayResult:
        return self._money_call(OperationKind.REFUND, self.inner.refund, kwargs)

    def payout(self, **kwargs) -> GatewayResult:
        return self._money_call(OperationKind.PAYOUT, self.inner.payout, kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        real = getattr(self.inner, attr)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            self._check_up()
            return real(*args, **kwargs)

        return call

    def _check_up(self) -> None:
        if self._down:
            raise GatewayUnavailable("The gateway is down (on cue).")

    def _money_call(
        self, kind: OperationKind, real: Callable[..., GatewayResult], kwargs: dict
    ) -> GatewayResult:
        self.calls.append((kind, kwargs["idempotency_key"]))
        self._check_up()
        cue = next((c for c in self._cues if c[0] is kind), None)
        if cue is None:
            return real(**kwargs)
        self._cues.remove(cue)
        _, action, result = cue
        if action == "answer":
            return result
        if action == "crash_before":
            raise ProcessDied(f"killed before the {kind.value} call")
        result = real(**kwargs)
        self.crashed.append(result)
        raise ProcessDied(f"killed after the {kind.value} call")
