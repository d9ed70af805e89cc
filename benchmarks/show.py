"""Whole-process benchmark of `funnel show`: every model at the default limit, alternately
with a baseline, median of the runs.

    python benchmarks/show.py [--raw-data ../shared/raw_data] [--runs 7] [--baseline-src DIR]

The baseline is a plain DuckDB script printing the same model's first 50 rows, or, with
--baseline-src, `funnel show` from another checkout of funnel (e.g. the commit before a
change: `git archive <commit> funnel | tar -x -C DIR`). Output goes to a pipe with
COLUMNS=120, as `funnel show | less` would see it. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench import process_env  # noqa: E402

SCHEMA = "public_pipedrive_analytics"

PLAIN = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
for row in con.execute(f"select * from {sys.argv[2]}.{sys.argv[3]} limit 50").fetchall():
    print(*row, sep=" | ")
"""

# Runs `funnel` from another checkout: the editable install of this one must not win.
OTHER = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv.pop(1))
sys.argv[0] = "funnel"
from funnel.cli import main
main()
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr.decode()}")
    return seconds


def funnel_command() -> list[str]:
    script = Path(sys.executable).with_name("funnel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "funnel"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-data", type=Path, default=REPO.parent / "shared" / "raw_data")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline-src", type=Path, help="a folder holding another funnel/ package")
    parser.add_argument("--models", help="comma-separated (default: every model of the project)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="funnel-bench-show-") as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(REPO / "sql", root / "sql")
        (root / "environments.toml").write_text(
            f'[dev]\ndatabase = "target/dev.duckdb"\nschema = "{SCHEMA}"\nraw_data = "{args.raw_data.resolve()}"\n'
        )
        env = process_env(FUNNEL_PROJECT_DIR=str(root), COLUMNS="120")
        timed([*funnel_command(), "build"], env)
        models = args.models.split(",") if args.models else _models(env)
        print(f"| model | funnel show | {'baseline funnel' if args.baseline_src else 'plain DuckDB, 50 rows'} |")
        print("|---|---:|---:|")
        for model in models:
            ours = [*funnel_command(), "show", "--model", model]
            if args.baseline_src:
                theirs = [sys.executable, "-c", OTHER, str(args.baseline_src.resolve()), "show", "--model", model]
            else:
                theirs = [sys.executable, "-c", PLAIN, str(root / "target" / "dev.duckdb"), SCHEMA, model]
            mine, base = [], []
            for _ in range(args.runs):
                mine.append(timed(ours, env))
                base.append(timed(theirs, env))
            print(f"| {model} | {statistics.median(mine):.2f} s | {statistics.median(base):.2f} s |", flush=True)


def _models(env: dict[str, str]) -> list[str]:
    out = subprocess.run([*funnel_command(), "models", "-f", "csv"], env=env, capture_output=True, text=True, check=True)
    return [line.split(",", 1)[0] for line in out.stdout.splitlines()[1:]]


if __name__ == "__main__":
    main()
