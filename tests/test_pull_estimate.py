"""`funnel pull --dry-run`: what a pull would fetch and cost, told before it is spent (issue 22)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests import test_pipedrive as api
from tests.test_pipedrive import export_bytes, flows_fetched, journal_deals, pull_cli, scratch_folders

# The fake API and its companions, as test_pipedrive.py serves them.
fake, sleeps, subset = api.fake, api.sleeps, api.subset


@pytest.fixture
def one_page_logs(fake):
    """Every change log in one page, so that a log is one request, as the estimate counts it."""
    fake.page_size = 500
    return fake


def lines(result) -> dict[str, str]:
    """The dry run's detail lines by their name (`deals`, `requests`, ...)."""
    assert result.exit_code == 0, result.output
    out = {}
    for line in result.stdout.splitlines()[1:]:
        name, _, text = line.strip().partition("  ")
        out[name] = text.strip()
    return out


def test_the_dry_run_costs_what_the_pull_then_spends_and_fetches_no_log(project, runner, one_page_logs, sleeps):
    fake = one_page_logs
    fake.daily = 10**6
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner, "--dry-run")
    listed, spent = len(fake.log), fake.spent
    assert flows_fetched(fake) == []  # the lists only
    assert export_bytes(project / "raw_data") == before and scratch_folders(project) == []
    assert not (project / ".raw_data.resume.jsonl").exists()
    shown = lines(result)
    deals = len(fake.flows)
    assert result.stdout.startswith(f"Dry run: funnel pull of everything from {fake.url} into {project / 'raw_data'}")
    assert shown["deals"] == f"{deals} deal change logs ({deals} to fetch)"

    fake.log.clear()
    fake.spent = 0
    assert pull_cli(runner).exit_code == 0
    assert shown["requests"] == f"about {len(fake.log)}: {listed} list pages (as read now) and {deals} change logs"
    assert shown["API tokens"] == f"about {fake.spent}: {spent} for the lists, 40 a change log (Pipedrive's costs)"
    allowed = (10**6 - spent) // 2
    assert shown["today's share"] == (
        f"fits: {allowed:,} tokens ([pipedrive] budget_share 0.5 of the {10**6 - spent:,} left today)"
    )
    assert shown["request budget"] == "fits: 10,000 requests"


def test_the_dry_run_counts_kept_logs_and_says_how_many_days_the_share_takes(project, runner, one_page_logs, sleeps):
    fake = one_page_logs
    fake.daily = 10**6
    assert pull_cli(runner, "--out", "probe").exit_code == 0
    whole = fake.spent
    fake.daily, fake.spent = whole, 0  # today: the whole pull's cost; funnel may spend half
    assert pull_cli(runner).exit_code == 3
    kept = len(journal_deals(project))
    assert 0 < kept < len(fake.flows)

    fake.daily, fake.spent = 2 * whole, 0  # the next day, twice the budget
    fake.log.clear()
    shown = lines(pull_cli(runner, "--dry-run"))
    lists = fake.spent
    to_fetch = len(fake.flows) - kept
    assert shown["deals"] == f"{len(fake.flows)} deal change logs ({kept} kept from an earlier pull, {to_fetch} to fetch)"
    tokens = lists + 40 * to_fetch
    assert shown["API tokens"].startswith(f"about {tokens}:")
    left = 2 * whole - lists
    assert shown["today's share"] == f"fits: {left // 2:,} tokens ([pipedrive] budget_share 0.5 of the {left:,} left today)"

    fake.daily, fake.spent = 2 * (lists + 100) + lists, 0  # a day on which funnel's share is the lists and 100
    shown = lines(pull_cli(runner, "--dry-run"))
    left = 2 * (lists + 100)
    days = -(-to_fetch // (100 // 40))  # two logs a day, the lists read again each day
    assert days > 1
    assert shown["today's share"] == (
        f"does not fit: {left // 2:,} tokens ([pipedrive] budget_share 0.5 of the {left:,} left today); "
        f"about {days} days at this share (each run stops at it with exit 3, the next continues)"
    )
    assert journal_deals(project) and flows_fetched(fake) == []  # the kept logs are still there, none fetched


def test_without_a_daily_budget_reported_the_share_is_unknown(project, runner, fake, sleeps):
    shown = lines(pull_cli(runner, "--dry-run", "--budget", "20"))
    assert shown["today's share"] == "unknown: the API did not report today's budget (x-daily-ratelimit-token-remaining)"
    assert (
        shown["request budget"] == "does not fit: 20 requests, not even the lists; raise [pipedrive] request_budget or --budget"
    )


def test_a_since_dry_run_costs_what_the_since_pull_then_spends(project, runner, one_page_logs, sleeps):
    """--since lists every deal and every activity (deleted ones are found by their absence); the dry run counts them."""
    fake = one_page_logs
    fake.page_size = 8  # several pages of activities, each log still one page
    assert pull_cli(runner).exit_code == 0
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fake.delete_activity(fake.activities[2]["id"], at=now)
    fake.deals[1]["update_time"] = now
    fake.daily, fake.spent = 10**6, 0
    fake.log.clear()

    shown = lines(pull_cli(runner, "--dry-run", "--since", "last"))
    listed, spent = len(fake.log), fake.spent
    current = [a for a in fake.activities if not a.get("is_deleted")]
    assert len(fake.requests_to("/api/v2/activities")) == -(-len(current) // fake.page_size)  # every page
    assert shown["deals"] == "1 deal change logs (1 to fetch)"
    fake.log.clear()
    fake.spent = 0
    assert pull_cli(runner, "--since", "last").exit_code == 0
    assert shown["requests"] == f"about {len(fake.log)}: {listed} list pages (as read now) and 1 change logs"
    assert shown["API tokens"] == f"about {fake.spent}: {spent} for the lists, 40 a change log (Pipedrive's costs)"
