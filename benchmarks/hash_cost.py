"""What hashing every source file whole costs a build that finds nothing changed.

    python benchmarks/hash_cost.py [--deals 1000000] [--runs 7] [--base REV] [--raw-data DIR]

A build decides whether to reuse each loaded table by the SHA-256 of its file's content
(README, "The plan"). Before, a file whose size and modification time matched the record
was not read at all, and files over 64 MiB were hashed from 256 samples. This script
measures, in the same run and on the same export:

- the nothing-changed `funnel build` of this checkout against that of `--base` (a commit
  from before the content hash; its code is unpacked from git into a temporary folder and
  run by this Python with PYTHONPATH), each in a project of its own that it built itself,
  alternating, median of `--runs` whole processes;
- hashing the export's files in-process (median of `--runs`), one after another and side by
  side in threads as a build does, against one full build of this checkout: what a hash
  costs beside a load.

The export is generated into a temporary folder unless --raw-data names one.
Results print as Markdown (paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import REPO, funnel_command, input_rows, machine, process_env, project, timed  # noqa: E402

BASE = "675c99f"  # main just before the content hash (issue 26, item 3)


def unpack(rev: str, into: Path) -> Path:
    """The funnel package of commit `rev`, unpacked under `into` (for PYTHONPATH)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "funnel"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def hash_files(raw: Path, side_by_side: bool) -> float:
    """Seconds to fingerprint every source file of `raw` (this checkout's code): one after
    another, or side by side in threads as a build does."""
    from funnel.build.plan import _hash_all, source_fingerprint
    from funnel.project.sources import SOURCES

    started = time.perf_counter()
    if side_by_side:
        _hash_all(raw, SOURCES, {})
    else:
        for source in SOURCES:
            source_fingerprint(raw, source)
    return time.perf_counter() - started


def timed_up_to_date(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds of one `funnel build` that must find nothing to do (else the figure means nothing)."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "is up to date" not in done.stderr:
        raise SystemExit(f"{' '.join(cmd)} did not find its build up to date:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--base", default=BASE, help="the commit to compare with (default: main before the content hash)")
    parser.add_argument("--raw-data", type=Path, default=None, help="an export to use instead of generating one")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    with tempfile.TemporaryDirectory(prefix="funnel-hash-cost-") as tmp:
        work = Path(tmp)
        raw = args.raw_data
        if raw is None:
            raw = work / "raw_data"
            started = time.perf_counter()
            subprocess.run([*funnel_command(), "generate", "--deals", str(args.deals), "--out", str(raw)], check=True)
            print(f"generated {args.deals:,} deals in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        base_code = unpack(args.base, work / "base")
        commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        for name in ("this", "base"):
            root = project(work / name, None, None)
            extra = {"FUNNEL_PROJECT_DIR": str(root)}
            if name == "base":
                extra["PYTHONPATH"] = str(base_code)
            # -P: the working folder (this checkout, when run from it) must not come before PYTHONPATH
            command = [sys.executable, "-P", "-m", "funnel"] if name == "base" else funnel_command()
            commands[name] = ([*command, "build", "--env", "bench", "--raw-data", str(raw)], process_env(**extra))
        full = {name: timed(cmd, env)[0] for name, (cmd, env) in commands.items()}  # each builds its own
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (cmd, env) in commands.items():
                times[name].append(timed_up_to_date(cmd, env))
        serial = statistics.median(hash_files(raw, False) for _ in range(args.runs))
        hashing = statistics.median(hash_files(raw, True) for _ in range(args.runs))
        size = sum(p.stat().st_size for p in raw.glob("*.csv"))
        rows = input_rows(raw)

    this, base = statistics.median(times["this"]), statistics.median(times["base"])
    print(f"Machine: {machine()}; {raw.name}: {rows:,} input rows, {size / 1e6:,.0f} MB of CSV; ", end="")
    print(f"median of {args.runs} alternating runs; base = {args.base}.\n")
    print("| | time |")
    print("|---|---:|")
    print(f"| nothing changed, before (size and mtime decide; samples over 64 MiB) | {base:.2f} s |")
    print(f"| nothing changed, now (every file hashed whole) | {this:.2f} s |")
    print(f"| the difference | {this - base:+.2f} s |")
    print(f"| hashing the six files in-process, one after another ({size / 1e6 / serial:,.0f} MB/s) | {serial:.2f} s |")
    print(f"| hashing them side by side, as a build does ({size / 1e6 / hashing:,.0f} MB/s) | {hashing:.2f} s |")
    print(f"| one full build (this checkout, for scale) | {full['this']:.2f} s |")
    print("\nEach run (s): " + "; ".join(f"{name}: {', '.join(f'{t:.2f}' for t in ts)}" for name, ts in times.items()))


if __name__ == "__main__":
    main()
