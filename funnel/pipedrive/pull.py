"""`funnel pull`: the six source files, fetched from the Pipedrive REST API.

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
import csv
import email.utils
import json
import math
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from funnel.errors import FunnelError, first_line
from funnel.project.sources import SOURCES_BY_TABLE, TS, TS_ISO, TS_MICRO

if TYPE_CHECKING:
    import httpx

    from funnel.project.config import Config

TOKEN_ENV = "PIPEDRIVE_API_TOKEN"
URL_ENV = "PIPEDRIVE_API_URL"
STATE_FILE = ".funnel-pull.json"
DEFAULT_BUDGET = 10_000
DEFAULT_SHARE = 0.5  # of the daily token budget left when a pull starts ([pipedrive] budget_share)
# Token costs of one request (docs/pipedrive-api.md, "Costs"): a page of a v1 list, a page
# of a v2 list, one deal's flow page.
COST_V1_LIST = 20
COST_V2_LIST = 10
COST_FLOW = 40
DAILY_HEADER = "x-daily-ratelimit-token-remaining"  # seen on the live API, undocumented
# Progress kept beside the export: `.<folder>.resume.jsonl`. Bump JOURNAL_FORMAT whenever what
# a deal's kept rows hold changes (columns, tracked fields, conversions): older journals are then
# discarded instead of mixing two layouts in one file.
JOURNAL_FORMAT = 1
PAGE_LIMIT = 500  # the largest page both API versions document
# The deal fields whose changes the models read (sql/staging/tests.toml accepts these
# four); the flow of other fields (title, value, ...) is left out of deal_changes.csv.
TRACKED_FIELDS = ("add_time", "user_id", "stage_id", "lost_reason")
# `--since last` starts this long before the last pull: clocks differ, merging is idempotent.
SINCE_OVERLAP = timedelta(hours=1)
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
API_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:?\d{2})?")
SINCE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?(Z|[+-]\d{2}:?\d{2})?")

Progress = Callable[[str, int, int], None]


class PullError(FunnelError):
    """The Pipedrive API could not be read completely; the previous export is unchanged."""


class PullStopped(PullError):
    """A budget ran out: the pull stopped cleanly, kept its progress, and the next run continues.

    The CLI exits 3 ("stopped early, resume later"); the previous export is unchanged.
    """

    exit_code = 3


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries before giving up (tests shrink the delays)."""

    tries: int = 5
    base_delay: float = 1.0  # seconds; doubled after each failed try
    max_wait: float = 120.0  # a longer Retry-After means the daily budget is spent: stop
    timeout: float = 30.0  # for each read from the connection
    deadline: float = 90.0  # for a whole answer: a server that drips a byte now and then is not left to hang the pull
    sleep: Callable[[float], None] = time.sleep


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


@dataclass
class Client:
    """GET with retries, pagination and a request budget over one httpx connection pool."""

    base_url: str
    token: str
    budget: int
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    share: float = DEFAULT_SHARE
    requests: int = 0
    tokens: int = 0  # spent, estimated from the documented costs
    daily_at_start: int | None = None  # the first x-daily-ratelimit-token-remaining seen
    daily_left: int | None = None  # the last one seen
    stop_note: str = ""  # what the pull has kept, for the message when a budget stops it
    _http: Any = None
    _deadline: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def allowed_tokens(self) -> int | None:
        """funnel's share of the daily budget left when the pull started, when the API reports it."""
        return None if self.daily_at_start is None else int(self.share * self.daily_at_start)

    def __enter__(self) -> Client:
        import httpx

        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-token": self.token, "accept": "application/json"},
            timeout=self.policy.timeout,
            follow_redirects=False,  # a redirect elsewhere must not receive the token
            transport=_deadline_transport(self._deadline),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def pages(self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Each page of a list endpoint, following v1 `start` or v2 `cursor` pagination to the end."""
        params = {**(params or {}), "limit": PAGE_LIMIT}
        cursors: set[str] = set()
        while True:
            body = self.get(path, params, missing_ok)
            if body is None:
                return
            data = body.get("data")
            if data is None:
                data = []
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise PullError(f"GET {path}: 'data' is not a list of objects; is {self.base_url} a Pipedrive API?")
            yield data
            more = body.get("additional_data") or {}
            pagination = more.get("pagination") or {} if isinstance(more, dict) else {}
            if not isinstance(more, dict) or not isinstance(pagination, dict):
                raise PullError(f"GET {path}: 'additional_data' is not an object; is {self.base_url} a Pipedrive API?")
            cursor = more.get("next_cursor")
            if cursor is not None and cursor != "":
                if not isinstance(cursor, str):
                    raise PullError(
                        f"GET {path}: next_cursor {_short(repr(cursor))} is not text; is the api_url a Pipedrive API?"
                    )
                if cursor in cursors:
                    raise PullError(
                        f"GET {path}: the API sent next_cursor {_short(repr(cursor))} a second time; its pagination "
                        "goes round in a circle, so the pull stops (try again later; if it persists, tell Pipedrive)."
                    )
                cursors.add(cursor)
                params = {**params, "cursor": cursor}
            elif pagination.get("more_items_in_collection"):
                next_start = pagination.get("next_start")
                if not isinstance(next_start, int) or isinstance(next_start, bool) or next_start <= params.get("start", -1):
                    raise PullError(
                        f"GET {path}: pagination does not advance (next_start={_short(repr(next_start))} after "
                        f"start={params.get('start', 0)}), so the pull stops (try again later; if it persists, tell Pipedrive)."
                    )
                params = {**params, "start": next_start}
            else:
                return

    def get(self, path: str, params: dict[str, Any], missing_ok: bool = False) -> dict[str, Any] | None:
        """One JSON object, retried on 429, 5xx, timeouts and truncated or invalid bodies."""
        import httpx

        last = ""
        for attempt in range(self.policy.tries):
            self._spend(path)
            wait = self.policy.base_delay * 2**attempt
            self._deadline.at = time.monotonic() + self.policy.deadline
            try:
                response = self._http.get(path, params=params)
            except httpx.ConnectError as e:
                raise PullError(
                    f"cannot connect to {self.base_url} ({first_line(e)}); check the api_url and the network."
                ) from None
            except (httpx.TimeoutException, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as e:
                last = f"{type(e).__name__}: {first_line(e)}"
                self.policy.sleep(wait)
                continue
            finally:
                self._deadline.at = None
            status = response.status_code
            self._daily(response, path)
            if status == 429 or status >= 500:
                last = f"HTTP {status}"
                self.policy.sleep(self._retry_after(response, wait, path))
                continue
            if status == 404 and missing_ok:
                return None
            if status >= 300:
                raise PullError(self._refusal(path, response))
            try:
                body = response.json()
            except (ValueError, UnicodeDecodeError):
                last = "a truncated or invalid JSON body"
                self.policy.sleep(wait)
                continue
            if not isinstance(body, dict) or body.get("success") is not True:
                message = body.get("error") if isinstance(body, dict) else None
                raise PullError(f"GET {path}: Pipedrive answered without success ({_short(str(message))}).")
            self._pace(response, path)
            return body
        raise PullError(f"GET {path} failed {self.policy.tries} times (last: {last}); Pipedrive may be down, try again later.")

    def _spend(self, path: str) -> None:
        """Count one request and its tokens, or stop when the request budget or the token share is used up."""
        cost = token_cost(path)
        with self._lock:
            if self.requests >= self.budget:
                if self.stop_note:
                    raise PullStopped(
                        f"the pull used its request budget of {self.budget:,} requests; {self.stop_note} "
                        "Run funnel pull again to continue (or raise [pipedrive] request_budget or --budget)."
                    )
                raise PullError(
                    f"the pull used its whole request budget of {self.budget:,} requests before finishing; "
                    "raise [pipedrive] request_budget or --budget, or pull less with --since last."
                )
            allowed = self.allowed_tokens
            if allowed is not None and self.tokens + cost > allowed:
                raise PullStopped(
                    f"funnel's share of today's API budget is spent: about {self.tokens:,} tokens of the "
                    f"{allowed:,} allowed ([pipedrive] budget_share {self.share:g} of the {self.daily_at_start:,} left "
                    f"when the pull started); {self.stop_note or 'nothing was kept yet.'} Run funnel pull again after "
                    "Pipedrive resets the daily budget (tomorrow) to continue."
                )
            self.requests += 1
            self.tokens += cost

    def _daily(self, response: httpx.Response, path: str) -> None:
        """Note the daily token budget the API reports (an undocumented header: absent is fine)."""
        left = _number_header(response, DAILY_HEADER, path)
        if left is None:
            return
        with self._lock:
            self.daily_left = int(left)
            if self.daily_at_start is None:
                # What remained before this first answer: its own cost is already counted in self.tokens.
                self.daily_at_start = int(left) + self.tokens

    def _retry_after(self, response: httpx.Response, default: float, path: str) -> float:
        """Seconds to wait after a 429 or 5xx: Retry-After, then x-ratelimit-reset, then backoff."""
        seconds = _retry_after_header(response, path)
        if seconds is None and response.status_code == 429:
            seconds = _number_header(response, "x-ratelimit-reset", path)
        if seconds is None:
            return default
        if seconds > self.policy.max_wait:
            raise PullStopped(
                f"GET {path}: Pipedrive's rate limit asks to wait {seconds:,.0f} s "
                f"(HTTP {response.status_code}), so the company's daily API budget is probably used up; "
                f"{self.stop_note or 'nothing was kept yet.'} Run funnel pull again after the budget resets (tomorrow)."
            )
        return seconds

    def _pace(self, response: httpx.Response, path: str) -> None:
        """Wait out the rate-limit window when the headers say it is used up, instead of hitting 429."""
        remaining = _number_header(response, "x-ratelimit-remaining", path)
        reset = _number_header(response, "x-ratelimit-reset", path)
        if remaining == 0 and reset is not None:
            self.policy.sleep(min(reset, self.policy.max_wait))

    def _refusal(self, path: str, response: httpx.Response) -> str:
        status = response.status_code
        if status == 401:
            return f"Pipedrive refused the API token (HTTP 401 on GET {path}); check {TOKEN_ENV} (Personal preferences > API)."
        if status == 403:
            return (
                f"the API token's user may not read GET {path} (HTTP 403); use the token of a user with global admin permissions."
            )
        if status == 404:
            return (
                f"GET {self.base_url}{path} was not found (HTTP 404); check the api_url, e.g. https://yourcompany.pipedrive.com."
            )
        if 300 <= status < 400:
            return f"GET {path} was redirected (HTTP {status}); set the api_url to the address it names, with https."
        try:
            message = response.json().get("error")
        except (ValueError, AttributeError, UnicodeDecodeError):
            message = response.text
        return f"GET {path}: HTTP {status} ({_short(str(message))})."


def pull(
    project: Config,
    out: Path,
    since: str | None = None,
    budget: int | None = None,
    on_progress: Progress | None = None,
    policy: RetryPolicy | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> PullResult:
    """Fetch the six source files into `out`; `since` ('last' or a timestamp) merges changes only.

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
    try:
        since_at = _since(since, out, api_url)
        with _scratch(out) as scratch:
            with client, Journal.open(_journal_path(out), api_url) as journal:
                tables, skipped, resumed = _fetch(client, since_at, on_progress, on_notice, journal)
            if since_at is not None:
                tables = _merge(out, tables)
            state = {"pulled_at": _rfc3339(pulled_at), "api_url": api_url, "since": since_at and _rfc3339(since_at)}
            _publish(scratch, out, tables, state)
            _journal_path(out).unlink(missing_ok=True)  # the export now holds it all
    except FunnelError as e:
        raise type(e)(_scrub(str(e), token)) from None
    except Exception as e:
        import httpx

        if isinstance(e, httpx.HTTPError | httpx.InvalidURL):
            raise PullError(f"{where}: {_scrub(first_line(e), token)}") from None
        raise
    rows = {name: len(table.rows) for name, table in tables.items()}
    return PullResult(out, rows, client.requests, since_at, time.perf_counter() - started, skipped, client.tokens, resumed)


def token_cost(path: str) -> int:
    """The documented token cost of one GET of `path` (docs/pipedrive-api.md, "Costs")."""
    if path.endswith("/flow"):
        return COST_FLOW
    return COST_V2_LIST if path.startswith("/api/v2/") else COST_V1_LIST


@dataclass
class Table:
    rows: list[tuple[str, ...]]
    refreshed: set[str] = field(default_factory=set)  # --since: keys whose old rows these replace
    key: int = 0  # column of that key


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

    def rows_of(
        label: str,
        path: str,
        convert: Callable[[dict[str, Any]], tuple[str, ...] | None],
        params: dict[str, Any] | None = None,
    ) -> list[Any]:
        rows: list[tuple[str, ...]] = []
        for page in client.pages(path, params):
            rows.extend(r for r in (convert(item) for item in page) if r is not None)
            report(label, len(rows), 0)
        return rows

    changed = {"updated_since": _rfc3339(since)} if since else {}
    tables = {
        "stages": Table(rows_of("stages", "/api/v1/stages", _stage)),
        "users": Table(rows_of("users", "/api/v1/users", _user)),
        "activity_types": Table(rows_of("activity types", "/api/v1/activityTypes", _activity_type)),
        "fields": Table(rows_of("deal fields", "/api/v1/dealFields", _field)),
        "activity": Table(rows_of("activities", "/api/v2/activities", _activity, changed)),
    }
    tables["activity"].refreshed = {r[0] for r in tables["activity"].rows}
    deals = list_deals(client, changed)
    kept = {deal: rows for deal, (updated, rows) in journal.deals.items() if deal in deals and updated == deals[deal]}
    if kept and on_notice:
        on_notice(f"resuming: {len(kept):,} of {len(deals):,} deals already fetched")
    changes: list[tuple[str, ...]] = [row for rows in kept.values() for row in rows]
    to_fetch = [deal for deal in sorted(deals) if deal not in kept]
    skipped = 0
    done = len(kept)

    def note() -> None:
        client.stop_note = f"{done:,} of {len(deals):,} deal change logs are kept in {journal.path.name}."

    note()
    report("deal change logs", done, len(deals))
    for deal_id in to_fetch:
        rows = deal_flow(client, deal_id)
        if rows is None:
            skipped += 1  # deleted after it was listed: it has no log any more
        else:
            journal.add(deal_id, deals[deal_id], rows)
            changes.extend(rows)
        done += 1
        note()
        report("deal change logs", done, len(deals))
    tables["deal_changes"] = Table(changes, refreshed={str(d) for d in deals})
    return tables, skipped, len(kept)


def list_deals(client: Client, params: dict[str, Any]) -> dict[int, str]:
    """The deals of the v2 list: id -> update_time (text as the API sent it; '' when absent)."""
    where = "/api/v2/deals"
    deals: dict[int, str] = {}
    for page in client.pages(where, params):
        for deal in page:
            deals[_int(deal, "id", where)] = _text(deal, "update_time", f"{where} deal {deal.get('id')!r}")
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


# --- resume: deal change logs kept beside the export as they come in -------------------


def _journal_path(out: Path) -> Path:
    return out.parent / f".{out.name}.resume.jsonl"


@dataclass
class Journal:
    """An append-only file of fetched deal change logs: a header line, then one line per deal.

    A deal's kept rows are reused while the deal's update_time in the listing is the one it
    had when its log was fetched. A line cut short by a kill is dropped (and cut off the file);
    a journal of another address or layout is discarded.
    """

    path: Path
    deals: dict[int, tuple[str, list[tuple[str, ...]]]]
    _file: Any = None
    _synced: float = 0.0

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path, api_url: str) -> Iterator[Journal]:
        header = {"format": JOURNAL_FORMAT, "api_url": api_url, "fields": list(TRACKED_FIELDS)}
        deals, good = _read_journal(path, header)
        journal = cls(path, deals)
        if good == 0:
            with path.open("w", encoding="utf-8") as f:
                f.write(json.dumps(header) + "\n")
            good = path.stat().st_size
        journal._file = path.open("r+b")
        try:
            journal._file.truncate(good)  # a line cut short by a kill goes
            journal._file.seek(good)
            yield journal
        finally:
            journal._file.flush()
            os.fsync(journal._file.fileno())
            journal._file.close()

    def add(self, deal_id: int, updated: str, rows: list[tuple[str, ...]]) -> None:
        line = json.dumps({"deal": deal_id, "update_time": updated, "rows": rows}, ensure_ascii=False)
        self._file.write(line.encode("utf-8") + b"\n")
        self._file.flush()  # in the kernel: a SIGKILL loses nothing
        if time.monotonic() - self._synced > 5:
            os.fsync(self._file.fileno())  # on disk every few seconds: a power cut loses little
            self._synced = time.monotonic()


def _read_journal(path: Path, header: dict[str, Any]) -> tuple[dict[int, tuple[str, list[tuple[str, ...]]]], int]:
    """The kept deals and the length of the file's whole lines (0: start a new journal)."""
    deals: dict[int, tuple[str, list[tuple[str, ...]]]] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return deals, 0
    good = 0
    for number, line in enumerate(data.splitlines(keepends=True)):
        if not line.endswith(b"\n"):
            break  # cut short by a kill
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            break
        if number == 0:
            if entry != header:
                return {}, 0
        elif _journal_entry(entry):
            deals[entry["deal"]] = (entry["update_time"], [tuple(row) for row in entry["rows"]])
        good += len(line)
    return deals, good


def _journal_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or set(entry) != {"deal", "update_time", "rows"}:
        return False
    deal, updated, rows = entry["deal"], entry["update_time"], entry["rows"]
    if isinstance(deal, bool) or not isinstance(deal, int) or not isinstance(updated, str) or not updated:
        return False
    width = len(SOURCES_BY_TABLE["deal_changes"].columns)
    return isinstance(rows, list) and all(
        isinstance(row, list) and len(row) == width and all(isinstance(v, str) for v in row) and row[0] == str(deal)
        for row in rows
    )


# --- one API object -> one CSV row, in the layout of funnel/project/sources.py ----------------


def _stage(item: dict[str, Any]) -> tuple[str, ...]:
    return (str(_int(item, "id", "stage")), _text(item, "name", "stage"))


def _user(item: dict[str, Any]) -> tuple[str, ...]:
    where = "user"
    return (
        str(_int(item, "id", where)),
        _text(item, "name", where),
        _text(item, "email", where),
        _time(item, "modified", where, TS_MICRO),
    )


def _activity_type(item: dict[str, Any]) -> tuple[str, ...]:
    where = "activity type"
    return (
        str(_int(item, "id", where)),
        _text(item, "name", where),
        "Yes" if _bool(item, "active_flag", where) else "No",
        _text(item, "key_string", where),
    )


def _field(item: dict[str, Any]) -> tuple[str, ...] | None:
    where = "deal field"
    key = _text(item, "key", where)
    if key not in TRACKED_FIELDS:
        return None
    options = item.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
        raise PullError(f"deal field {key}: 'options' is not a list of objects ({_short(repr(options))}).")
    labels = [
        {"id": str(_int(o, "id", f"deal field {key} option")), "label": _text(o, "label", f"deal field {key}")} for o in options
    ]
    return (
        str(_int(item, "id", where)),
        key,
        _text(item, "name", where),
        json.dumps(labels, ensure_ascii=False) if labels else "",
    )


def _activity(item: dict[str, Any]) -> tuple[str, ...]:
    where = f"activity {item.get('id')!r}"
    due_date = item.get("due_date")
    due_to = ""
    if due_date:
        due_time = item.get("due_time") or "00:00"
        due_to = _time({"due": f"{due_date} {due_time}"}, "due", where, TS_ISO)
    return (
        str(_int(item, "id", where)),
        _text(item, "type", where),
        _optional_int(item, "owner_id", where),
        _optional_int(item, "deal_id", where),
        "True" if _bool(item, "done", where) else "False",
        due_to,
    )


def _deal_change(deal_id: int, item: dict[str, Any], path: str) -> tuple[str, ...] | None:
    data = item.get("data")
    if item.get("object") != "dealChange" or not isinstance(data, dict):
        return None
    key = data.get("field_key")
    if key not in TRACKED_FIELDS:
        return None
    where = f"{path} change {data.get('id')!r}"
    new_value = data.get("new_value")
    if isinstance(new_value, bool) or not isinstance(new_value, str | int | float | type(None)):
        raise PullError(f"{where}: new_value {_short(repr(new_value))} is not a plain value.")
    value = "" if new_value is None else str(new_value)
    if key == "add_time" and API_TIME.fullmatch(value):
        value = _time({"v": value}, "v", where, TS_ISO)  # the export writes creation times with a T
    return (str(deal_id), _time(data, "log_time", where, TS), key, value)


def _int(item: dict[str, Any], key: str, where: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PullError(f"{where}: {key} {_short(repr(value))} is not a whole number; the API answer is not as documented.")
    return value


def _optional_int(item: dict[str, Any], key: str, where: str) -> str:
    return "" if item.get(key) is None else str(_int(item, key, where))


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise PullError(f"{where}: {key} {_short(repr(value))} is not text.")
    return value


def _bool(item: dict[str, Any], key: str, where: str) -> bool:
    value = item.get(key)
    if not isinstance(value, bool):
        raise PullError(f"{where}: {key} {_short(repr(value))} is not true or false.")
    return value


def _time(item: dict[str, Any], key: str, where: str, layout: str) -> str:
    """An API timestamp (v1 'YYYY-MM-DD HH:MM:SS' UTC or v2 RFC 3339) in the file's declared layout, UTC."""
    value = item.get(key)
    match = API_TIME.fullmatch(value) if isinstance(value, str) else None
    try:
        if match is None:
            raise ValueError
        clock = match.group(2) + (":00" if match.group(2).count(":") == 1 else "")
        moment = datetime.fromisoformat(f"{match.group(1)}T{clock}{_zone(match.group(3))}").astimezone(UTC)
        if moment.year < 1000:  # strftime writes year 1 as '1', which no file reader takes for a date
            raise ValueError
    except (ValueError, OverflowError):
        raise PullError(
            f"{where}: {key} {_short(repr(value))} is not a timestamp like 2024-01-31 13:45:00 (years 1000 to 9999, UTC)."
        ) from None
    return moment.replace(tzinfo=None).strftime(layout)


def _zone(zone: str | None) -> str:
    if zone in (None, "Z"):
        return "+00:00"
    return zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"


# --- --since: what to fetch, and merging it into the previous export ------------------


def parse_since(text: str) -> str:
    """'last' or a timestamp (UTC unless it names a zone); raises PullError otherwise."""
    if text == "last" or SINCE.fullmatch(text.strip()):
        return text.strip()
    raise PullError(f"'{text}' is not 'last' or a timestamp like 2024-06-01 or 2024-06-01T08:00:00Z.")


def _since(since: str | None, out: Path, api_url: str) -> datetime | None:
    if since is None:
        return None
    missing = [s.file_name for s in SOURCES_BY_TABLE.values() if not s.optional and not (out / s.file_name).is_file()]
    if missing:
        raise PullError(
            f"{out}: no previous export to merge into ({', '.join(missing)} missing); run funnel pull without --since first."
        )
    state_path = out / STATE_FILE
    state: dict[str, Any] = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise PullError(f"{state_path}: not valid JSON; run funnel pull without --since to start afresh.") from None
    if state.get("api_url") not in (None, api_url):
        raise PullError(
            f"{out} was pulled from {state.get('api_url')}, not {api_url}; pull into another folder or without --since."
        )
    if since == "last":
        if "pulled_at" not in state:
            raise PullError(f"{state_path}: no previous pull recorded; run funnel pull without --since first.")
        return _parse_since_time(str(state["pulled_at"]), state_path.name) - SINCE_OVERLAP
    return _parse_since_time(parse_since(since), "--since")


def _parse_since_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PullError(f"{where}: '{text}' is not a timestamp like 2024-06-01T08:00:00Z.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _merge(out: Path, fresh: dict[str, Table]) -> dict[str, Table]:
    """The previous export with the fresh rows in: refreshed deals and activities replace their old rows."""
    merged = dict(fresh)
    for name in ("activity", "deal_changes"):
        table = fresh[name]
        kept = [row for row in _read(out, name) if row[table.key] not in table.refreshed]
        merged[name] = Table(kept + table.rows)
    return merged


def _read(out: Path, name: str) -> list[tuple[str, ...]]:
    source = SOURCES_BY_TABLE[name]
    path = out / source.file_name
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != list(source.columns):
            raise PullError(f"{path} line 1: not the declared header; run funnel pull without --since to start afresh.")
        rows = [tuple(row) for row in reader]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(source.columns):
            raise PullError(f"{path} line {number}: {len(row)} fields, expected {len(source.columns)}; pull without --since.")
    return rows


# --- writing: a scratch folder beside the export, renamed into place at the end --------


@contextlib.contextmanager
def _scratch(out: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `out`, removed unless published; dead pulls' folders go first."""
    if out.exists() and not out.is_dir():
        raise PullError(f"{out}: is a file, expected the export folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.pull-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
            raise PullError(f"another funnel pull into {out} is running (pid {pid}); wait for it to finish.")
        shutil.rmtree(stale, ignore_errors=True)
    scratch = out.parent / f".{out.name}.pull-{os.getpid()}"
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(scratch: Path, out: Path, tables: dict[str, Table], state: dict[str, Any]) -> None:
    names = []
    for name, table in tables.items():
        source = SOURCES_BY_TABLE[name]
        with (scratch / source.file_name).open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(source.columns)
            rows = sorted(table.rows, key=_row_order)
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        names.append(source.file_name)
    state["rows"] = {name: len(table.rows) for name, table in tables.items()}
    (scratch / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    out.mkdir(exist_ok=True)
    # Seven renames take microseconds; Ctrl-C or SIGTERM waits until they are all done.
    with _signals_deferred():
        for name in [*names, STATE_FILE]:
            os.replace(scratch / name, out / name)
        _fsync_dir(out)


def _row_order(row: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """Numeric ids in numeric order, then the remaining columns as text: the same file every time."""
    return tuple((0, int(v), "") if v.isdigit() else (1, 0, v) for v in row)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- settings, secrets, small helpers --------------------------------------------------


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


NUMBER = re.compile(r"\s*\d{1,15}(\.\d{1,6})?\s*")


def _number_header(response: httpx.Response, name: str, path: str) -> float | None:
    """A header that must hold a plain non-negative number (seconds or a count), or None when absent."""
    value = response.headers.get(name)
    if value is None:
        return None
    if not NUMBER.fullmatch(value):
        raise PullError(
            f"GET {path}: the {name} header {_short(repr(value))} is not a number of the kind Pipedrive documents "
            f"(HTTP {response.status_code}); is the api_url a Pipedrive API? Try again later."
        )
    return float(value)


def _retry_after_header(response: httpx.Response, path: str) -> float | None:
    """Retry-After (RFC 9110): a number of seconds, or an HTTP date (then the seconds until it, at least 0)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if NUMBER.fullmatch(value):
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        moment = None
    if moment is None:
        raise PullError(
            f"GET {path}: the Retry-After header {_short(repr(value))} is neither seconds nor an HTTP date "
            f"(HTTP {response.status_code}); is the api_url a Pipedrive API? Try again later."
        )
    if moment.tzinfo is None:  # '-0000': UTC, with the sender's zone unknown (RFC 5322 3.3)
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _deadline_transport(deadline: threading.local) -> Any:
    """httpx's transport, with every read and write of a request bounded by the thread's `deadline.at`.

    httpx's timeout is per read: an answer that drips a byte every few seconds never trips it.
    Here each read waits at most until the request's overall deadline, then fails as a timeout.
    """
    import httpcore
    import httpx

    def clamp(timeout: float | None) -> float | None:
        at: float | None = getattr(deadline, "at", None)
        if at is None:
            return timeout
        left: float = at - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("no whole answer before the request's deadline")
        return left if timeout is None else min(timeout, left)

    class Stream(httpcore.NetworkStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, clamp(timeout))  # type: ignore[no-any-return]

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, clamp(timeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
            return Stream(self._inner.start_tls(ssl_context, server_hostname, clamp(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def connect_tcp(
            self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None
        ) -> Any:
            return Stream(self._inner.connect_tcp(host, port, clamp(timeout), local_address, socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            return Stream(self._inner.connect_unix_socket(path, clamp(timeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    transport = httpx.HTTPTransport()
    transport._pool._network_backend = Backend(transport._pool._network_backend)  # httpcore has no public hook
    return transport


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
