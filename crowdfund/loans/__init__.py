"""Loans: what a settled debt campaign becomes — the schedule, repayments and their split among lenders."""
