"""`funnel pull`: the six source files and deals.csv, fetched from the Pipedrive REST API.

Pipedrive's export screen has no stage-change history, so deal_changes.csv and its
companions come from the API (endpoints and field mapping: docs/pipedrive-api.md). The
files are written in the layout funnel/project/sources.py declares, into a temporary folder beside
the export, and renamed into place only when every resource was fetched: an interrupted
pull leaves the previous export as it was.

The API token comes only from $PIPEDRIVE_API_TOKEN. It is sent in the `x-api-token`
header (never in a URL), and scrubbed from every message that could quote it.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from funnel.errors import FunnelError, first_line
from funnel.pipedrive.client import DEFAULT_SHARE, TOKEN_ENV, Client, PullError, PullStopped, RetryPolicy
from funnel.pipedrive.folder import Table, _dropped, _merge, _publish, _rfc3339, _scratch, _since
from funnel.pipedrive.journal import Journal, _journal_path
from funnel.pipedrive.rows import (
    STAGE_COLUMNS,
    _activity,
    _activity_type,
    _deal,
    _deal_change,
    _field,
    _int,
    _pipeline,
    _stage,
    _text,
    _time,
    _user,
    lost_reason_ids,
    with_lost_reason_ids,
)
from funnel.project.sources import TS

if TYPE_CHECKING:
    from funnel.project.config import Config

URL_ENV = "PIPEDRIVE_API_URL"
DEFAULT_BUDGET = 10_000
LOOPBACK = {"localhost", "127.0.0.1", "::1"}

Progress = Callable[[str, int, int], None]
KEPT = "\x00kept\x00"  # stands for how many deal change logs are kept, in a budget's stop message


@dataclass(frozen=True)
class PullResult:
    out: Path
    rows: dict[str, int]
    requests: int
    since: datetime | None
    seconds: float
    skipped_deals: int = 0
    tokens: int = 0  # estimated from the documented costs
    resumed_deals: int = 0  # change logs taken from the kept progress of an earlier run
    dropped_deals: int = 0  # deals of the previous export that no longer exist in the account
    dropped_activities: int = 0  # activities of the previous export that no longer exist in the account


def pull(
    project: Config,
    out: Path,
    since: str | None = None,
    budget: int | None = None,
    on_progress: Progress | None = None,
    policy: RetryPolicy | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> PullResult:
    """Fetch the six source files and deals.csv into `out`; `since` ('last' or a timestamp) merges changes only.

    Deal change logs are kept as they come in (`.<out>.resume.jsonl` beside `out`), so a pull
    that stops (a budget, Ctrl-C, a crash) continues where it was next time. Raises PullError,
    PullStopped (a budget ran out; progress kept) or ConfigError with the token scrubbed; `out`
    is then unchanged.
    """
    started = time.perf_counter()
    token = _token()
    api_url, where = _api_url(project)
    budget = budget or project.pipedrive.request_budget or DEFAULT_BUDGET
    share = project.pipedrive.budget_share if project.pipedrive.budget_share is not None else DEFAULT_SHARE
    out = out.resolve()
    pulled_at = datetime.now(UTC).replace(microsecond=0)
    client = Client(api_url, token, budget, policy or RetryPolicy(), share=share)
    with scrubbed(token, where):
        since_at = _since(since, out, api_url)
        with _scratch(out) as scratch:
            with client, Journal.open(_journal_path(out), api_url) as journal:
                tables, skipped, resumed = _fetch(client, since_at, on_progress, on_notice, journal)
            dropped = _dropped(out, "deal_changes", tables["deal_changes"].current)
            dropped_activities = _dropped(out, "activity", tables["activity"].current)
            if since_at is not None:
                tables = _merge(out, tables)
            state = {"pulled_at": _rfc3339(pulled_at), "api_url": api_url, "since": since_at and _rfc3339(since_at)}
            _publish(scratch, out, tables, state)
            _journal_path(out).unlink(missing_ok=True)  # the export now holds it all
    rows = {name: len(table.rows) for name, table in tables.items()}
    seconds = time.perf_counter() - started
    return PullResult(out, rows, client.requests, since_at, seconds, skipped, client.tokens, resumed, dropped, dropped_activities)


def _fetch(
    client: Client,
    since: datetime | None,
    on_progress: Progress | None,
    on_notice: Callable[[str], None] | None,
    journal: Journal,
) -> tuple[dict[str, Table], int, int]:
    def report(label: str, done: int, total: int) -> None:
        if on_progress:
            on_progress(label, done, total)

    tables, deals = list_account(client, since, report)
    kept = {deal: rows for deal, (updated, rows) in journal.deals.items() if deal in deals and updated == deals[deal]}
    if kept and on_notice:
        on_notice(f"resuming: {len(kept):,} of {len(deals):,} deals already fetched")
    changes: list[tuple[str, ...]] = [row for rows in kept.values() for row in rows]
    to_fetch = [deal for deal in sorted(deals) if deal not in kept]
    gone: set[str] = set()  # deleted after they were listed
    done = len(kept)

    def note() -> str:
        return f"{done:,} of {len(deals):,} deal change logs are kept in {journal.path.name}."

    # A budget may run out in another thread while earlier logs are still coming in: the
    # message says how many were kept once they are all in (KEPT is replaced where it surfaces).
    client.stop_note = KEPT
    report("deal change logs", done, len(deals))
    flows = client.each(lambda deal: deal_flow(client, deal), to_fetch)
    try:
        with contextlib.closing(flows):  # on any exit (Ctrl-C too) the fetches under way end before the client closes
            for deal_id, rows in flows:
                if rows is None:
                    gone.add(str(deal_id))  # deleted after it was listed: it has no log any more
                else:
                    journal.add(deal_id, deals[deal_id], rows)
                    changes.extend(rows)
                done += 1
                report("deal change logs", done, len(deals))
    except PullStopped as e:
        raise PullStopped(str(e).replace(KEPT, note())) from None
    changes = with_lost_reason_ids(changes, lost_reason_ids(tables["fields"].rows))
    current = {row[0] for row in tables["deals"].rows}
    tables["deal_changes"] = Table(changes, refreshed={str(d) for d in deals}, current=current)
    tables["deals"].rows = [row for row in tables["deals"].rows if row[0] not in gone]
    return tables, len(gone), len(kept)


def list_account(client: Client, since: datetime | None, report: Progress) -> tuple[dict[str, Table], dict[int, str]]:
    """Every table but the deal change logs, and the deals (id -> update_time) whose logs to fetch.

    Every deal and every activity is listed, with `since` too: deals.csv and activity.csv are
    the account's current state, and a deal or activity not listed was deleted (the v2 lists
    have no filter that returns deleted items; docs/pipedrive-api.md, "All or nothing, and
    --since"). With `since`, the logs to fetch are those of the deals updated since.
    """

    def rows_of(
        label: str,
        path: str,
        convert: Callable[[dict[str, Any]], Any],
        params: dict[str, Any] | None = None,
    ) -> list[Any]:
        rows: list[Any] = []
        for page in client.pages(path, params):
            rows.extend(r for r in (convert(item) for item in page) if r is not None)
            report(label, len(rows), 0)
        return rows

    # v1 stages and pipelines are deprecated for their v2 equivalents (Pipedrive changelog,
    # "Deprecation of selected API v1 endpoints", effective 2026-01-01; out of support from
    # 2026-08-01: https://developers.pipedrive.com/changelog/post/deprecated-apiv1-endpoints-become-out-of-support).
    stages = rows_of("stages", "/api/v2/stages", lambda item: item)
    pipelines = dict(rows_of("pipelines", "/api/v2/pipelines", _pipeline))
    tables = {
        "stages": Table([_stage(item, pipelines) for item in stages], columns=STAGE_COLUMNS),
        "users": Table(rows_of("users", "/api/v1/users", _user)),
        "activity_types": Table(rows_of("activity types", "/api/v1/activityTypes", _activity_type)),
        "fields": Table(rows_of("deal fields", "/api/v1/dealFields", _field)),
        "activity": Table(rows_of("activities", "/api/v2/activities", _activity)),
    }
    tables["activity"].current = {r[0] for r in tables["activity"].rows}
    listed = list_deals(client, report)
    tables["deals"] = Table([row for _updated, _moment, row in listed.values()])
    since_text = since.strftime(TS) if since else ""
    return tables, {deal: updated for deal, (updated, moment, _row) in listed.items() if not moment or moment >= since_text}


# Active deals, then archived ones: since 2025-07-15 GET /api/v2/deals no longer returns
# archived deals; they come from GET /api/v2/deals/archived, same parameters, cursor paginated
# (https://developers.pipedrive.com/changelog/post/breaking-change-archived-deals-and-leads-will-not-be-returned-in-existing-endpoints-and-will-not-be-editable).
# Without `status`, both list every deal that is not deleted.
DEAL_LISTS = ("/api/v2/deals", "/api/v2/deals/archived")


def list_deals(client: Client, report: Progress) -> dict[int, tuple[str, str, tuple[str, ...]]]:
    """Every deal of the account, active and archived: id -> (update_time as sent, in UTC as TS, deals.csv row)."""
    deals: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    for path in DEAL_LISTS:
        for page in client.pages(path):
            for item in page:
                where = f"{path} deal {item.get('id')!r}"
                updated = _text(item, "update_time", where)
                moment = _time(item, "update_time", where, TS) if updated else ""
                deals[_int(item, "id", where)] = (updated, moment, _deal(item, where))
            report("deals", len(deals), 0)
    return deals


def deal_flow(client: Client, deal_id: int) -> list[tuple[str, ...]] | None:
    """The tracked changes of one deal, every page; None when the deal no longer exists (404)."""
    path = f"/api/v1/deals/{deal_id}/flow"
    rows: list[tuple[str, ...]] = []
    found = False
    for page in client.pages(path, {"items": "dealChange"}, missing_ok=True):
        found = True
        rows.extend(r for r in (_deal_change(deal_id, item, path) for item in page) if r is not None)
    return rows if found else None


@contextlib.contextmanager
def scrubbed(token: str, where: str) -> Iterator[None]:
    """Errors with the token scrubbed from their message; httpx's own errors as one PullError naming `where`."""
    try:
        yield
    except FunnelError as e:
        raise type(e)(_scrub(str(e), token)) from None
    except Exception as e:
        import httpx

        if isinstance(e, httpx.HTTPError | httpx.InvalidURL):
            raise PullError(f"{where}: {_scrub(first_line(e), token)}") from None
        raise


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise PullError(f"{TOKEN_ENV} is not set; export it with the API token from Pipedrive (Personal preferences > API).")
    if not re.fullmatch(r"[\x21-\x7e]+", token):
        raise PullError(f"{TOKEN_ENV} holds spaces or characters an API token never has; copy it again from Pipedrive.")
    return token


def _api_url(project: Config) -> tuple[str, str]:
    """The company's API address from $PIPEDRIVE_API_URL or [pipedrive] api_url, and where it came from."""
    if os.environ.get(URL_ENV):
        url, where = os.environ[URL_ENV].strip(), URL_ENV
    elif project.pipedrive.api_url:
        url, where = project.pipedrive.api_url.strip(), f"{project.config_path}: [pipedrive] api_url"
    else:
        raise PullError(
            f"no Pipedrive address; set api_url in the [pipedrive] table of {project.config_path} "
            f"(e.g. https://yourcompany.pipedrive.com) or {URL_ENV}."
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise PullError(f"{where}: '{url}' is not a URL like https://yourcompany.pipedrive.com.") from None
    if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment or "@" in parts.netloc:
        raise PullError(f"{where}: '{_scrub(url, '')}' must be a plain address like https://yourcompany.pipedrive.com.")
    if parts.path.strip("/"):
        raise PullError(f"{where}: '{url}' must not have a path; funnel adds /api/v1 and /api/v2 itself.")
    if parts.scheme == "http" and host not in LOOPBACK:
        raise PullError(f"{where}: '{url}' must use https; the API token would travel unencrypted.")
    return f"{parts.scheme}://{parts.netloc}", where


def _scrub(text: str, token: str) -> str:
    text = re.sub(r"(api_token=)[^&\s'\"]*", r"\1***", text)
    return text.replace(token, "***") if token else text
