"""Imports every package's models so the metadata (and Alembic) sees all tables."""

from crowdfund.accounts import models as accounts_models  # noqa: F401
from crowdfund.campaigns import models as campaigns_models  # noqa: F401
from crowdfund.engine import models as engine_models  # noqa: F401
from crowdfund.equity import models as equity_models  # noqa: F401
from crowdfund.extensions import db
from crowdfund.ledger import models as ledger_models  # noqa: F401
from crowdfund.ledger.guards import POSTGRES_GUARDS_SQL
from crowdfund.loans import models as loans_models  # noqa: F401
from crowdfund.patient_aid import models as patient_aid_models  # noqa: F401
from crowdfund.payments import models as payments_models  # noqa: F401
from crowdfund.payments import sandbox as payments_sandbox_models  # noqa: F401
from crowdfund.receipts import models as receipts_models  # noqa: F401
from crowdfund.settlement import models as settlement_models  # noqa: F401


def create_schema() -> None:
    """Create every table from the models (tests, benchmarks); production uses the migrations.

    On PostgreSQL it also installs the guards the migrations install (see
    `crowdfund.ledger.guards`).
    """
    db.create_all()
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:
            conn.exec_driver_sql(POSTGRES_GUARDS_SQL)
