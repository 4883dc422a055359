"""The campaigns' periodic jobs, for `crowdfund.jobs`: launch on the start date, close at the end.

Each entry: (name, what its count means, function of `now`, least seconds between runs).
"""

from __future__ import annotations

from crowdfund.campaigns.lifecycle import close_due_campaigns, launch_due_campaigns

JOBS = (
    ("campaigns.launch", "launched", launch_due_campaigns, 0),
    ("campaigns.close", "closed", close_due_campaigns, 0),
)
