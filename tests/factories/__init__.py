"""Small factory functions for tests, one module per package of the application.

`from tests.factories import make_user, make_campaign, add_card, charge` keeps working;
new tests may import from the module of the package they are about
(`tests.factories.ledger`, `tests.factories.payments`, …).
"""

from tests.factories.accounts import (
    PASSWORD,
    campaigner,
    login,
    make_org,
    make_user,
    make_users_fast,
    next_key,
    operator,
    password_hash,
    sequence,
)
from tests.factories.api import bearer, make_token
from tests.factories.campaigns import (
    FORM_DATETIME,
    TIER_FORM,
    edit_form,
    form_time,
    image_bytes,
    make_campaign,
    ready_draft,
    service_data,
    snapshot,
    submitted_campaign,
)
from tests.factories.engine import cny, make_backer, make_backers_fast, make_investor
from tests.factories.gateway import FailingGateway, ProcessDied
from tests.factories.ledger import balance, equity, post_charge, release, transfer
from tests.factories.payments import (
    DECLINED,
    DECLINES_CHARGES,
    INSUFFICIENT_FUNDS,
    NEEDS_AUTHENTICATION,
    VISA,
    add_card,
    charge,
    customer_id,
)

__all__ = [
    "DECLINED",
    "DECLINES_CHARGES",
    "FORM_DATETIME",
    "INSUFFICIENT_FUNDS",
    "NEEDS_AUTHENTICATION",
    "PASSWORD",
    "TIER_FORM",
    "VISA",
    "FailingGateway",
    "ProcessDied",
    "add_card",
    "balance",
    "bearer",
    "campaigner",
    "charge",
    "cny",
    "customer_id",
    "edit_form",
    "equity",
    "form_time",
    "image_bytes",
    "login",
    "make_backer",
    "make_backers_fast",
    "make_campaign",
    "make_investor",
    "make_org",
    "make_token",
    "make_user",
    "make_users_fast",
    "next_key",
    "operator",
    "password_hash",
    "post_charge",
    "ready_draft",
    "release",
    "sequence",
    "service_data",
    "snapshot",
    "submitted_campaign",
    "transfer",
]
