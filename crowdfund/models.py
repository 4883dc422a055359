"""Imports every package's models so the metadata (and Alembic) sees all tables."""

from crowdfund.accounts import models as accounts_models  # noqa: F401
from crowdfund.campaigns import models as campaigns_models  # noqa: F401
