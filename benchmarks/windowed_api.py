"""A fake Pipedrive API behind a fixed rate window: benchmarks/pull_rate.py and tests/test_pull_window.py.

Deals with one-page change logs; every other list is empty. The window is enforced the way
Pipedrive documents it (https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting):
x-ratelimit-limit, -remaining and -reset on every answer, 429 with Retry-After over the limit.
Every answer waits `latency` seconds, and the fake records what it refused and how many
requests it saw at once and in one window.

It lives here, not under tests/, because a benchmark does not import test code; the test
imports it as `benchmarks.windowed_api` (the repository root is on pytest's path). One copy
keeps the two from drifting apart: the benchmark's own copy served deals without a status
once deals.csv was pulled, and the benchmark stopped at the first deal.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def deal_item(deal: int) -> dict[str, Any]:
    """A v2 deal as the pull reads it (deals.csv takes its state)."""
    return {
        "id": deal,
        "title": f"Deal {deal}",
        "owner_id": 1,
        "pipeline_id": 1,
        "stage_id": 1,
        "status": "open",
        "value": 100,
        "currency": "EUR",
        "add_time": "2024-01-01T00:00:00Z",
        "update_time": "2024-01-01T00:00:00Z",
        "won_time": None,
        "lost_time": None,
        "expected_close_date": None,
        "probability": None,
    }


class WindowedApi:
    """Deals with one-page change logs behind a fixed window of `limit` requests per `window` seconds."""

    def __init__(self, deals: int, limit: int, latency: float, window: float = 2.0, whole_seconds: bool = False) -> None:
        self.deals = [deal_item(n) for n in range(1, deals + 1)]
        self.limit, self.window, self.latency = limit, window, latency
        self.whole_seconds = whole_seconds  # x-ratelimit-reset rounded up, like the documented example's "2"
        self.lock = threading.Lock()
        self.window_start = -math.inf
        self.count = 0  # requests in the current window
        self.refused = 0  # answered 429
        self.most_in_window = 0  # admitted in one window, at most
        self.in_flight = 0
        self.most_in_flight = 0  # under way at once, at most

    def admit(self) -> tuple[bool, dict[str, str]]:
        """Count a request in the current window: (within the limit, the rate headers)."""
        with self.lock:
            now = time.monotonic()
            if now >= self.window_start + self.window:
                self.window_start, self.count = now, 0
            self.count += 1
            self.most_in_window = max(self.most_in_window, min(self.count, self.limit))
            reset = self.window_start + self.window - now
            headers = {
                "x-ratelimit-limit": str(self.limit),
                "x-ratelimit-remaining": str(max(self.limit - self.count, 0)),
                "x-ratelimit-reset": str(math.ceil(reset)) if self.whole_seconds else f"{reset:.3f}",
            }
            if self.count > self.limit:
                self.refused += 1
                return False, {**headers, "Retry-After": f"{reset:.3f}"}
            return True, headers

    def answer(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        empty = {"success": True, "data": [], "additional_data": {"pagination": {"more_items_in_collection": False}}}
        if path == "/api/v2/deals":
            start = int(query.get("cursor", ["0"])[0])
            limit = int(query.get("limit", ["500"])[0])
            more = start + limit < len(self.deals)
            page = self.deals[start : start + limit]
            return {"success": True, "data": page, "additional_data": {"next_cursor": str(start + limit) if more else None}}
        if path.endswith("/flow"):
            deal = int(path.split("/")[4])
            change = {
                "id": deal,
                "item_id": deal,
                "field_key": "stage_id",
                "new_value": str(deal % 5),
                "log_time": "2024-02-01 10:00:00",
            }
            return {**empty, "data": [{"object": "dealChange", "timestamp": change["log_time"], "data": change}]}
        return empty  # stages, pipelines, users, activity types, deal fields, activities, archived deals: none


def serve(api: WindowedApi) -> ThreadingHTTPServer:
    """`api` on a free local port, answered from a thread; call shutdown() and server_close() when done."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits 40 ms for a delayed ACK

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            ok, headers = api.admit()
            with api.lock:
                api.in_flight += 1
                api.most_in_flight = max(api.most_in_flight, api.in_flight)
            time.sleep(api.latency)
            with api.lock:
                api.in_flight -= 1
            url = urlsplit(self.path)
            status, body = (200, api.answer(url.path, parse_qs(url.query))) if ok else (429, {"success": False})
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    return server
