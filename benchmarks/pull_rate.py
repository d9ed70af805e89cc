"""How close `funnel pull` comes to the speed Pipedrive's rate window allows.

    python benchmarks/pull_rate.py [--deals 600] [--limit 40] [--window 2] [--latency 0.1] [--runs 3] [--whole-seconds]

A local fake of the API (benchmarks/windowed_api.py, the one tests/test_pull_window.py
uses) answers every request after `--latency` seconds and enforces a fixed window of
`--limit` requests per `--window` seconds the way Pipedrive documents it
(x-ratelimit-limit/-remaining/-reset on every answer, 429 with Retry-After over the limit).
Every deal has a one-page change log, so the deal change logs take one request each and
the window allows limit/window of them a second. The pull runs in this process (the fake in
a thread), once as funnel does it and once one request at a time (MAX_IN_FLIGHT = 1, the
client before the window was used), and prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from windowed_api import WindowedApi, serve  # noqa: E402 (a sibling: benchmarks/ is not a package)

TOKEN = "benchmark-token"


def run(args: argparse.Namespace, in_flight: int, root: Path) -> dict[str, float]:
    from funnel.pipedrive import pull as pipedrive
    from funnel.pipedrive import window
    from funnel.project.config import load_config

    fake = WindowedApi(args.deals, args.limit, args.latency, args.window, args.whole_seconds)
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
