"""`funnel pull --dry-run`: what a pull would fetch and what it would cost, before it spends it.

The dry run reads the lists a pull reads (a few requests: stages, users, activity types,
fields, activities, and the deals 500 a page) and nothing else: the deal change logs, one
request per deal, are the bulk of a first pull, and are counted instead of fetched. Logs an
earlier pull kept for deals not updated since (the resume journal) are not counted again.
Costs are the documented per-endpoint token costs (docs/pipedrive-api.md, "Costs").
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from funnel.pipedrive.client import COST_FLOW, DEFAULT_SHARE, Client, RetryPolicy
from funnel.pipedrive.folder import _since
from funnel.pipedrive.journal import kept_logs
from funnel.pipedrive.pull import DEFAULT_BUDGET, _api_url, _token, list_account, scrubbed

if TYPE_CHECKING:
    from funnel.project.config import Config


@dataclass(frozen=True)
class PullEstimate:
    """What `funnel pull` would do now: counts from the lists, costs from the documentation."""

    api_url: str
    out: Path
    since: datetime | None
    deals: int  # deals whose change log the pull needs
    kept: int  # of them, logs an earlier pull kept (not updated since)
    list_requests: int  # what the lists took in this dry run; the pull reads them again
    list_tokens: int
    budget: int  # the request budget
    share: float  # [pipedrive] budget_share
    daily_left: int | None  # x-daily-ratelimit-token-remaining after the dry run, when the API reports it

    @property
    def to_fetch(self) -> int:
        return self.deals - self.kept

    @property
    def requests(self) -> int:
        """The pull's requests: the lists again and one per change log (a log of over 500 changes takes more)."""
        return self.list_requests + self.to_fetch

    @property
    def tokens(self) -> int:
        return self.list_tokens + self.to_fetch * COST_FLOW

    @property
    def allowed(self) -> int | None:
        """funnel's share of what is left of today's budget."""
        return None if self.daily_left is None else int(self.share * self.daily_left)

    @property
    def fits_share(self) -> bool | None:
        return None if self.allowed is None else self.tokens <= self.allowed

    @property
    def fits_budget(self) -> bool:
        return self.requests <= self.budget

    @property
    def days(self) -> int | None:
        """Days of today's share the pull takes (None: unknown, or not even the lists fit in it)."""
        if self.allowed is None or self.fits_share:
            return None if self.allowed is None else 1
        logs_a_day = (self.allowed - self.list_tokens) // COST_FLOW
        return math.ceil(self.to_fetch / logs_a_day) if logs_a_day > 0 else None


def estimate(
    project: Config, out: Path, since: str | None = None, budget: int | None = None, policy: RetryPolicy | None = None
) -> PullEstimate:
    """Read the lists a pull into `out` reads and count what the rest would take; writes nothing."""
    token = _token()
    api_url, where = _api_url(project)
    budget = budget or project.pipedrive.request_budget or DEFAULT_BUDGET
    share = project.pipedrive.budget_share if project.pipedrive.budget_share is not None else DEFAULT_SHARE
    out = out.resolve()
    # The request budget is the pull's: the dry run reads the lists whatever it is, to say whether they fit.
    client = Client(api_url, token, sys.maxsize, policy or RetryPolicy(), share=share)
    with scrubbed(token, where):
        since_at = _since(since, out, api_url)
        with client:
            _, deals = list_account(client, since_at, lambda label, done, total: None)
        journal = kept_logs(out, api_url)
    kept = sum(1 for deal, updated in journal.items() if deals.get(deal) == updated)
    return PullEstimate(
        api_url, out, since_at, len(deals), kept, client.requests, client.tokens, budget, share, client.daily_left
    )
