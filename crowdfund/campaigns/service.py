"""The campaign use cases in one place to import from; each lives in the module of its concern.

- `access`: who may see and edit a campaign; the campaign row lock.
- `drafting`: create and edit a draft, its kind's terms, its cover image.
- `tiers`: reward tiers.
- `story`: the story's safe HTML and the campaign's slug.
- `lifecycle`: submit for review, launch, close; the `CampaignEvent` trail.
- `kinds`: everything that differs between reward, equity, debt and donation.
"""

from __future__ import annotations

from crowdfund.campaigns.access import (
    campaign_for_member,
    campaigns_for_user,
    editable_for,
    is_member,
    lock_campaign,
    organisations_for,
)
from crowdfund.campaigns.drafting import (
    CAMPAIGN_CURRENCIES,
    KIND_DESCRIPTIONS,
    MAX_DURATION,
    MAX_STORY_LENGTH,
    MAX_SUMMARY_LENGTH,
    MAX_TITLE_LENGTH,
    MIN_DURATION,
    TERM_FIELDS,
    DraftInvalid,
    create_draft,
    default_dates,
    remove_cover,
    set_cover,
    update_draft,
)
from crowdfund.campaigns.kinds import (
    MAX_DIAGNOSIS_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TERM_MONTHS,
    Problem,
    kind_rules,
    patient_aid_cap,
)
from crowdfund.campaigns.lifecycle import (
    MAX_COMMENT_LENGTH,
    START_GRACE,
    campaign_events,
    close_due_campaigns,
    latest_review_comment,
    launch,
    launch_due_campaigns,
    submission_problems,
    submit_for_review,
    transition,
)
from crowdfund.campaigns.parsing import MAX_AMOUNT_MINOR, MAX_ANNUAL_RATE_BP
from crowdfund.campaigns.story import RESERVED_SLUGS, render_story, slug_base
from crowdfund.campaigns.tiers import (
    MAX_SHIPS_TO_LENGTH,
    MAX_TIER_DESCRIPTION_LENGTH,
    MAX_TIER_QUANTITY,
    MAX_TIERS,
    add_tier,
    remove_tier,
    update_tier,
)

__all__ = [
    "CAMPAIGN_CURRENCIES",
    "KIND_DESCRIPTIONS",
    "MAX_AMOUNT_MINOR",
    "MAX_ANNUAL_RATE_BP",
    "MAX_COMMENT_LENGTH",
    "MAX_DIAGNOSIS_LENGTH",
    "MAX_DURATION",
    "MAX_NAME_LENGTH",
    "MAX_SHIPS_TO_LENGTH",
    "MAX_STORY_LENGTH",
    "MAX_SUMMARY_LENGTH",
    "MAX_TERM_MONTHS",
    "MAX_TIERS",
    "MAX_TIER_DESCRIPTION_LENGTH",
    "MAX_TIER_QUANTITY",
    "MAX_TITLE_LENGTH",
    "MIN_DURATION",
    "RESERVED_SLUGS",
    "START_GRACE",
    "TERM_FIELDS",
    "DraftInvalid",
    "Problem",
    "add_tier",
    "campaign_events",
    "campaign_for_member",
    "campaigns_for_user",
    "close_due_campaigns",
    "create_draft",
    "default_dates",
    "editable_for",
    "is_member",
    "kind_rules",
    "launch",
    "launch_due_campaigns",
    "latest_review_comment",
    "lock_campaign",
    "organisations_for",
    "patient_aid_cap",
    "remove_cover",
    "remove_tier",
    "render_story",
    "set_cover",
    "slug_base",
    "submission_problems",
    "submit_for_review",
    "transition",
    "update_draft",
    "update_tier",
]
