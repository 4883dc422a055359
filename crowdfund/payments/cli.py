"""`flask payments …`: the command group; `reconcile` is wired in by `create_app`.

`flask payments reconcile` brings pledges in line too, so it lives with the engine (which
knows both pledges and payments): `crowdfund.engine.cli.reconcile_command`.
"""

from __future__ import annotations

from flask.cli import AppGroup

payments_cli = AppGroup("payments", help="Payments: reconciliation with the gateway.")
