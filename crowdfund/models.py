"""Imports every package's models so the metadata (and Alembic) sees all tables."""

from crowdfund.accounts import models as accounts_models  # noqa: F401
from crowdfund.campaigns import models as campaigns_models  # noqa: F401
from crowdfund.engine import models as engine_models  # noqa: F401
from crowdfund.ledger import models as ledger_models  # noqa: F401
from crowdfund.payments import models as payments_models  # noqa: F401
from crowdfund.payments import sandbox as payments_sandbox_models  # noqa: F401
