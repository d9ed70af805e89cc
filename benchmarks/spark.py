"""Whole-process benchmark: `funnel build` on DuckDB against the same build on Spark `local[N]`.

    python benchmarks/spark.py [--deals 200000,1000000] [--runs 3] [--master local[2]]

For each size, an export is generated once (benchmarks/.data, reused), then the DuckDB env
and the Spark env are built alternately, each run a fresh `funnel build` process timed
from start to exit. Peak memory is the largest sum of the resident memory of the process
and all its children (the Spark JVM is a child), sampled every 0.1 s. After the runs the
two builds are compared with `funnel parity --env spark --against duck`. Results print as
a Markdown table (median of the runs; paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"
ENVIRONMENTS = """\
[duck]
database = "target/duck.duckdb"
schema = "public_pipedrive_analytics"
raw_data = "{raw}"

[spark]
database = "target/spark.duckdb"
schema = "public_pipedrive_analytics"
raw_data = "{raw}"
engine = "spark"
master = "{master}"
warehouse = "target/warehouse"

[spark.spark]
"spark.sql.shuffle.partitions" = {partitions}
"spark.driver.memory" = "{driver_memory}"
"""


def funnel() -> list[str]:
    script = Path(sys.executable).with_name("funnel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "funnel"]


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every descendant (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run `cmd`; return (seconds, peak RSS of the process tree in MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode() if proc.stderr else ''}")
    return seconds, peak / 2**20


def export(deals: int) -> Path:
    out = DATA / f"deals-{deals}"
    if not (out / "deal_changes.csv").exists():
        subprocess.run([*funnel(), "generate", "--deals", str(deals), "--out", str(out), "--force"], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", default="200000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--driver-memory", default="2g")
    args = parser.parse_args()
    rows = []
    for deals in (int(d) for d in args.deals.split(",")):
        raw = export(deals)
        with tempfile.TemporaryDirectory(prefix="funnel-spark-bench-") as tmp:
            root = Path(tmp)
            shutil.copytree(REPO / "sql", root / "sql")
            (root / "environments.toml").write_text(
                ENVIRONMENTS.format(raw=raw, master=args.master, partitions=args.partitions, driver_memory=args.driver_memory)
            )
            results: dict[str, list[tuple[float, float]]] = {"duck": [], "spark": []}
            for run in range(args.runs):
                for env in ("duck", "spark") if run % 2 == 0 else ("spark", "duck"):
                    # Every run builds from scratch: DuckDB would otherwise find nothing to do.
                    for leftover in (root / "target").glob(f"{env}*"):
                        leftover.unlink()
                    shutil.rmtree(root / "target" / "warehouse" / env, ignore_errors=True)
                    results[env].append(timed([*funnel(), "build", "--env", env], root))
                    print(f"{deals:>9,} deals  {env:<5} run {run + 1}: {results[env][-1][0]:7.1f} s", file=sys.stderr)
            parity = subprocess.run([*funnel(), "parity", "--env", "spark", "--against", "duck"], cwd=root, capture_output=True)
            same = "yes" if parity.returncode == 0 else "NO"
            print(parity.stdout.decode(errors="replace") + parity.stderr.decode(errors="replace"), file=sys.stderr)
            size = sum(f.stat().st_size for f in raw.iterdir()) / 2**20
        duck, spark = (
            (statistics.median(s for s, _ in results[e]), statistics.median(m for _, m in results[e])) for e in ("duck", "spark")
        )
        rows.append(
            f"| {deals:,} deals ({size:,.0f} MiB CSV) | {duck[0]:.1f} s | {duck[1]:,.0f} MiB | "
            f"{spark[0]:.1f} s | {spark[1]:,.0f} MiB | {spark[0] / duck[0]:.1f}x | {same} |"
        )
    print(f"| export | DuckDB time | DuckDB peak | Spark {args.master} time | Spark peak | Spark/DuckDB | parity |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
