"""Payments: one gateway protocol, the built-in sandbox (default) and Stripe, webhooks.

Use `crowdfund.payments.service`; nothing outside this package knows which gateway is in
use or imports `stripe`.
"""
