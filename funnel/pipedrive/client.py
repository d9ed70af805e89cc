"""The HTTP side of `funnel pull`: GET with retries, deadlines, rate headers, pagination and budgets.

Pipedrive's rate limits and token costs: docs/pipedrive-api.md ("Costs", "Rate limits").
"""

from __future__ import annotations

import email.utils
import itertools
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from funnel.errors import FunnelError, first_line
from funnel.pipedrive.window import Window

if TYPE_CHECKING:
    import httpx

TOKEN_ENV = "PIPEDRIVE_API_TOKEN"
DEFAULT_SHARE = 0.5  # of the daily token budget left when a pull starts ([pipedrive] budget_share)
# Token costs of one request (docs/pipedrive-api.md, "Costs"): a page of a v1 list, a page
# of a v2 list, one deal's flow page.
COST_V1_LIST = 20
COST_V2_LIST = 10
COST_FLOW = 40
DAILY_HEADER = "x-daily-ratelimit-token-remaining"  # seen on the live API, undocumented
PAGE_LIMIT = 500  # the largest page both API versions document
T = TypeVar("T")
R = TypeVar("R")


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
    window: Window = field(default_factory=Window)
    _http: Any = None
    _deadline: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def allowed_tokens(self) -> int | None:
        """funnel's share of the daily budget left when the pull started, when the API reports it."""
        return None if self.daily_at_start is None else int(self.share * self.daily_at_start)

    def __post_init__(self) -> None:
        self.window.sleep = self.policy.sleep

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
            self.window.acquire()
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
        """Tell the window what the rate headers say: its size, and whether it is used up (then wait, instead of a 429)."""
        limit = _number_header(response, "x-ratelimit-limit", path)
        remaining = _number_header(response, "x-ratelimit-remaining", path)
        reset = _number_header(response, "x-ratelimit-reset", path)
        self.window.note(limit, remaining, None if reset is None else min(reset, self.policy.max_wait))

    def each(self, fetch: Callable[[T], R], items: Iterable[T]) -> Generator[tuple[T, R], None, None]:
        """`(item, fetch(item))` for every item, in order, with as many fetches under way as the window allows.

        The results come in the order of `items` whatever order the answers arrive in, so what
        the caller writes (the resume journal, the files) is the same as one at a time. When a
        fetch fails, the ones not started are cancelled, the ones under way are waited for, and
        the error is raised where its item comes in order. Close to the end of a budget, one
        fetch at a time again: fetches side by side would share the last requests, and none finish.
        """
        workers = self.window.in_flight
        if workers == 1:
            for item in items:
                yield item, fetch(item)
            return
        from concurrent.futures import Future, ThreadPoolExecutor

        queue: deque[tuple[T, Future[R]]] = deque()
        todo = iter(items)
        with ThreadPoolExecutor(workers, thread_name_prefix="funnel-pull") as pool:
            try:
                while True:
                    room = 2 * workers if self.headroom() > 4 * workers else 1
                    for item in itertools.islice(todo, max(room - len(queue), 0)):
                        queue.append((item, pool.submit(fetch, item)))
                    if not queue:
                        return
                    item, future = queue.popleft()
                    yield item, future.result()
            finally:
                for _, future in queue:
                    future.cancel()

    def headroom(self) -> int:
        """About how many more requests the budgets allow (counted as deal flow pages, the dearest)."""
        with self._lock:
            left = self.budget - self.requests
            allowed = self.allowed_tokens
            if allowed is not None:
                left = min(left, (allowed - self.tokens) // COST_FLOW)
            return left

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


def token_cost(path: str) -> int:
    """The documented token cost of one GET of `path` (docs/pipedrive-api.md, "Costs")."""
    if path.endswith("/flow"):
        return COST_FLOW
    return COST_V2_LIST if path.startswith("/api/v2/") else COST_V1_LIST


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


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
