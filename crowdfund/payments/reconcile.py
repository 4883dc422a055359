"""Reconciliation: our operations, the ledger and the gateway must tell the same story.

`reconcile` first settles operations left pending (a crash, a timeout, a lost webhook)
from the gateway's view — calling the gateway again only for an operation it has never
seen — and then compares, operation by operation:

- a succeeded operation has exactly its ledger transaction, for its amount;
- every ledger transaction we posted belongs to a succeeded operation;
- the gateway agrees on the state and amount of what we recorded;
- (sandbox) the gateway has no charge we have no record of;
- the clearing account holds what our succeeded charges, refunds and payouts add up to.

It prints nothing itself; `flask payments reconcile` prints the report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import CURRENCIES, Money
from crowdfund.payments import service
from crowdfund.payments.gateway import KEY_METADATA, GatewayUnavailable
from crowdfund.payments.models import ChargeOutcome, OperationKind, OperationState, PaymentOperation


@dataclass
class ReconcileReport:
    checked: int = 0
    #: "charge 12: pending -> succeeded" for each operation settled on this run
    resolved: list[str] = field(default_factory=list)
    #: what does not match, one line each
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _name(op: PaymentOperation) -> str:
    return f"{op.kind.value} #{op.id} ({op.idempotency_key}, {op.amount.format(with_code=True)})"


def _settle_pending(report: ReconcileReport, stale_after: timedelta, retry: bool) -> None:
    for op in service.operations_needing_attention(stale_after):
        before = op.state
        try:
            op = service.reconcile_operation(op, retry=retry)
        except GatewayUnavailable as exc:
            report.differences.append(f"{_name(op)}: could not reach the gateway ({exc.message})")
            continue
        if op.state is not before:
            report.resolved.append(f"{_name(op)}: {before.value} -> {op.state.value}")
        elif op.state is OperationState.PENDING:
            report.differences.append(f"{_name(op)}: still pending ({op.failure_message or 'no answer yet'})")


def _check_ledger(report: ReconcileReport, ops: list[PaymentOperation]) -> None:
    from crowdfund.ledger.models import LedgerTransaction, TransactionKind
    from crowdfund.ledger.service import find_transaction

    ours = {service.ledger_key(op): op for op in ops}
    for op in ops:
        txn = find_transaction(service.ledger_key(op))
        if op.state is OperationState.SUCCEEDED:
            if txn is None:
                report.differences.append(f"{_name(op)}: succeeded but has no ledger transaction")
            elif txn.totals() != {op.currency: op.amount_amount}:
                report.differences.append(
                    f"{_name(op)}: ledger transaction #{txn.sequence} moved {txn.totals()}, not {op.amount}"
                )
        elif txn is not None:
            report.differences.append(
                f"{_name(op)}: is {op.state.value} but ledger transaction #{txn.sequence} exists"
            )
    posted_for_payments = select(LedgerTransaction).where(
        LedgerTransaction.kind.in_([TransactionKind.CHARGE, TransactionKind.REFUND, TransactionKind.PAYOUT]),
        LedgerTransaction.key.like("payment:%"),
    )
    for txn in db.session.scalars(posted_for_payments):
        if txn.key not in ours:
            report.differences.append(
                f"ledger transaction #{txn.sequence} ({txn.key}) has no payment operation"
            )


def _check_gateway(report: ReconcileReport, ops: list[PaymentOperation], since: timedelta) -> None:
    gateway = service.get_gateway()
    cutoff = utcnow() - since
    for op in ops:
        if op.gateway != gateway.name or op.created_at < cutoff or not op.gateway_id:
            continue
        if op.state not in (OperationState.SUCCEEDED, OperationState.FAILED):
            continue
        try:
            seen = gateway.retrieve(op.kind, op.gateway_id)
        except GatewayUnavailable as exc:
            report.differences.append(f"{_name(op)}: could not reach the gateway ({exc.message})")
            continue
        says_ok = seen.outcome is ChargeOutcome.SUCCEEDED
        if says_ok != (op.state is OperationState.SUCCEEDED):
            report.differences.append(
                f"{_name(op)}: we recorded {op.state.value}, the gateway says {seen.status}"
            )
        elif says_ok and seen.amount is not None and seen.amount != op.amount:
            report.differences.append(f"{_name(op)}: the gateway has {seen.amount.format(with_code=True)}")
    list_charges = getattr(gateway, "list_charges", None)
    if list_charges is not None:
        keys = {op.idempotency_key for op in ops if op.kind is OperationKind.CHARGE}
        for charge in list_charges():
            if charge.metadata.get(KEY_METADATA) not in keys:
                report.differences.append(
                    f"gateway charge {charge.gateway_id} ({charge.status}) has no operation"
                )


def _check_clearing(report: ReconcileReport, ops: list[PaymentOperation]) -> None:
    from crowdfund.ledger.service import balance_of_clearing

    net: dict[str, int] = defaultdict(int)
    for op in ops:
        if op.state is OperationState.SUCCEEDED:
            net[op.currency] += op.amount_amount if op.kind is OperationKind.CHARGE else -op.amount_amount
    for currency in sorted(set(net) | set(CURRENCIES)):
        held = balance_of_clearing(currency)
        expected = Money(net[currency], currency)
        if held != expected:
            report.differences.append(
                f"clearing account {currency}: the ledger holds {held.format(with_code=True)}, "
                f"our payments add up to {expected.format(with_code=True)}"
            )


def reconcile(
    *,
    stale_after: timedelta = timedelta(minutes=5),
    since: timedelta = timedelta(days=30),
    retry: bool = True,
) -> ReconcileReport:
    """Settle stale pending operations, then compare records, ledger and gateway (see module docstring)."""
    report = ReconcileReport()
    _settle_pending(report, stale_after, retry)
    ops = list(db.session.scalars(select(PaymentOperation).order_by(PaymentOperation.id)))
    report.checked = len(ops)
    _check_ledger(report, ops)
    _check_gateway(report, ops, since)
    _check_clearing(report, ops)
    return report
