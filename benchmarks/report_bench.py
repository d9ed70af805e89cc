"""Whole-process timing of `funnel report` against `funnel show --summary`, alternately.

    python benchmarks/report_bench.py [--project DIR] [--env dev] [--runs 7]

`--project` is a funnel project with a build (default: this repository, which must have
been built). The baseline is the terminal summary of the same month: the same build read,
no HTML. Each run is a fresh process; the median and the report's size are printed as a
Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, funnel_command, process_env, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=REPO)
    parser.add_argument("--env", default="dev")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = process_env(FUNNEL_PROJECT_DIR=str(args.project.resolve()))
    with tempfile.TemporaryDirectory(prefix="funnel-report-bench-") as tmp:
        out = Path(tmp) / "report.html"
        report = [*funnel_command(), "report", "--env", args.env, "--out", str(out)]
        summary = [*funnel_command(), "show", "--env", args.env, "--summary"]
        timed(report, env)  # warm the file cache and the compiled-project cache
        report_times, summary_times, report_rss = [], [], []
        for _ in range(args.runs):
            seconds, rss = timed(report, env)
            report_times.append(seconds)
            report_rss.append(rss)
            summary_times.append(timed(summary, env)[0])
        size = out.stat().st_size
    r, s = statistics.median(report_times), statistics.median(summary_times)
    print("| project | funnel report | show --summary | ratio | report size | peak memory |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| {args.project} | {r:.2f} s | {s:.2f} s | {r / s:.2f} | {size / 1e6:.2f} MB | {max(report_rss):.0f} MiB |")


if __name__ == "__main__":
    main()
