"""How close `funnel pull` comes to the speed Pipedrive's rate window allows.

    python benchmarks/pull_rate.py [--deals 600] [--limit 40] [--window 2] [--latency 0.1] [--runs 3] [--whole-seconds]

A local fake of the API answers every request after `--latency` seconds and enforces a
fixed window of `--limit` requests per `--window` seconds the way Pipedrive documents it
(x-ratelimit-limit/-remaining/-reset on every answer, 429 with Retry-After over the limit).
Every deal has a one-page change log, so the deal change logs take one request each and
the window allows limit/window of them a second. The pull runs in this process (the fake in
a thread), once as funnel does it and once one request at a time (MAX_IN_FLIGHT = 1, the
client before the window was used), and prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "benchmark-token"


class WindowedFake:
    """Deals with one-page change logs behind a fixed rate window, and what it saw."""

    def __init__(self, deals: int, limit: int, window: float, latency: float, whole_seconds: bool = False) -> None:
        self.whole_seconds = whole_seconds  # x-ratelimit-reset rounded up, like the documented example's "2"
        self.deals = [{"id": n, "title": f"Deal {n}", "update_time": "2024-01-01T00:00:00Z"} for n in range(1, deals + 1)]
        self.limit, self.window, self.latency = limit, window, latency
        self.lock = threading.Lock()
        self.window_start = -math.inf
        self.count = 0
        self.refused = 0
        self.most_in_window = 0

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
            change = {"id": deal, "item_id": deal, "field_key": "stage_id", "new_value": "2", "log_time": "2024-02-01 10:00:00"}
            return {**empty, "data": [{"object": "dealChange", "timestamp": change["log_time"], "data": change}]}
        return empty  # stages, users, activity types, deal fields, activities: none


def serve(fake: WindowedFake) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            ok, headers = fake.admit()
            time.sleep(fake.latency)
            url = urlsplit(self.path)
            status, body = (200, fake.answer(url.path, parse_qs(url.query))) if ok else (429, {"success": False})
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


def run(args: argparse.Namespace, in_flight: int, root: Path) -> dict[str, float]:
    from funnel.pipedrive import pull as pipedrive
    from funnel.pipedrive import window
    from funnel.project.config import load_config

    fake = WindowedFake(args.deals, args.limit, args.window, args.latency, args.whole_seconds)
    server = serve(fake)
    os.environ["PIPEDRIVE_API_URL"] = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["PIPEDRIVE_API_TOKEN"] = TOKEN
    seen: list[tuple[float, int]] = []

    def progress(label: str, done: int, total: int) -> None:
        if label == "deal change logs":
            seen.append((time.perf_counter(), done))

    window.MAX_IN_FLIGHT, saved = in_flight, window.MAX_IN_FLIGHT
    try:
        result = pipedrive.pull(load_config(root), root / "pulled", budget=10 * args.deals, on_progress=progress)
    finally:
        window.MAX_IN_FLIGHT = saved
        server.shutdown()
        server.server_close()
    seconds = seen[-1][0] - seen[0][0]
    return {
        "seconds": result.seconds,
        "flows_per_s": (seen[-1][1] - seen[0][1]) / seconds,
        "requests": result.requests,
        "refused": fake.refused,
        "most_in_window": fake.most_in_window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=600)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--whole-seconds", action="store_true", help="x-ratelimit-reset in whole seconds, rounded up")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from funnel.pipedrive.window import MAX_IN_FLIGHT
    from funnel.project.scaffold import init

    allowed = args.limit / args.window
    print(f"{args.deals:,} deals, window {args.limit} requests / {args.window:g} s ({allowed:g} req/s), ", end="")
    print(f"{args.latency * 1000:g} ms an answer, reset in {'whole' if args.whole_seconds else 'fractional'} seconds")
    print()
    print(
        f"| client | deal change logs / s (median of {args.runs}) | of the window's speed | whole pull | requests | 429s |",
        end="",
    )
    print(" most in one window |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, in_flight in [("funnel (window used)", MAX_IN_FLIGHT), ("one request at a time", 1)]:
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "project"
                init(root)
                results.append(run(args, in_flight, root))
        rate = statistics.median(r["flows_per_s"] for r in results)
        whole = statistics.median(r["seconds"] for r in results)
        print(
            f"| {name} | {rate:.1f} | {100 * rate / allowed:.0f} % | {whole:.1f} s | {results[0]['requests']:,} | "
            f"{max(r['refused'] for r in results)} | {max(r['most_in_window'] for r in results)} |"
        )


if __name__ == "__main__":
    main()
