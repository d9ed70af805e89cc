"""Whole-process benchmarks: `funnel build` against a plain DuckDB script, alternately.

    python benchmarks/bench.py build [--raw-data ../shared/raw_data] [--runs 7] [--same-models] [--other FUNNEL]
    python benchmarks/bench.py scale [--deals 10000,100000,1000000] [--runs 3] [--memory-limit 1GB]
    python benchmarks/bench.py export [--rows 1000000] [--runs 5]
    python benchmarks/bench.py versus --other ../base/.venv/bin/funnel [--other-sql ../base/sql] [--deals 1000000] [--runs 5]

Each run is a fresh process, timed from start to exit; the two commands alternate so that
both see the same machine state, and the median of the runs is reported with the peak
memory (max RSS of the process) and input rows per second. The plain script is
benchmarks/plain_duckdb.py. Results print as a Markdown table (paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"  # generated exports, reused between runs (gitignored)


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a timed process: this one's, but with bytecode caching on. With
    PYTHONDONTWRITEBYTECODE set (some CI images set it) an editable install compiles every
    funnel module again in every run (about 0.1 s), which `pip install .` users never pay;
    duckdb, compiled at install, would not pay it either."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd`; return (seconds, peak RSS in MiB). Fails loudly if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode() if proc.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024


def funnel_command() -> list[str]:
    """The `funnel` script of this Python's environment, as users run it (else python -m funnel)."""
    script = Path(sys.executable).with_name("funnel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "funnel"]


def project(workdir: Path, memory_limit: str | None, threads: int | None, sql: Path | None = None) -> Path:
    """A throwaway project: the repo's sql/ (or `sql`) and an environment writing into `workdir`."""
    root = workdir / "project"
    shutil.copytree(sql or REPO / "sql", root / "sql")
    lines = ["[bench]", 'database = "target/bench.duckdb"', 'schema = "public_pipedrive_analytics"']
    if memory_limit:
        lines.append(f'memory_limit = "{memory_limit}"')
    if threads:
        lines.append(f"threads = {threads}")
    (root / "environments.toml").write_text("\n".join(lines) + "\n")
    return root


def input_rows(raw: Path) -> int:
    total = 0
    for path in raw.glob("*.csv"):
        with path.open("rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1
    return total


def models_script(root: Path, out: Path) -> Path:
    """The project's models, rendered, as one SQL script of `create` statements in build order
    (for the plain script's --same-models run)."""
    from funnel.project.config import load_config
    from funnel.project.manifest import compile
    from funnel.quoting import quote_ident, relation

    config = load_config(root)
    manifest = compile(config, config.environment("bench"))
    schema = manifest.env.schema
    lines = [f"create schema if not exists {quote_ident(schema)};"]
    for name in manifest.graph.order:
        model = manifest.graph.models[name]
        target = relation(schema, name)
        if model.is_seed:
            columns = ", ".join(f"'{c}': '{t}'" for c, t in model.seed_columns.items())
            pad = ", null_padding = true" if getattr(model, "seed_optional", ()) else ""  # left-out columns: NULL
            lines.append(
                f"create table {target} as select * from read_csv('{model.path}', header = true, "
                f"auto_detect = false, columns = {{{columns}}}{pad});"
            )
        else:
            kind = "view" if model.materialized == "view" else "table"
            lines.append(f"create {kind} {target} as {model.sql}\n;")  # a model may end in a -- comment
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def compare(
    raw: Path,
    runs: int,
    memory_limit: str | None = None,
    threads: int | None = None,
    same_models: bool = False,
    other: str | None = None,
) -> dict[str, float]:
    """Alternate funnel build and the plain script on `raw`; return medians and ratio. With
    `other` (another installation's funnel, e.g. a base commit's venv) that one runs in
    the same rounds too, so both ratios see the same machine."""
    with tempfile.TemporaryDirectory(prefix="funnel-bench-") as tmp:
        root = project(Path(tmp), memory_limit, threads)
        env = process_env(FUNNEL_PROJECT_DIR=str(root))
        # --full-refresh: a rerun of the same export would otherwise be "up to date" in 0.1 s
        funnel_cmd = [*funnel_command(), "build", "--env", "bench", "--raw-data", str(raw), "--full-refresh"]
        plain_out = Path(tmp) / "plain.duckdb"
        plain_cmd = [sys.executable, str(HERE / "plain_duckdb.py"), str(raw), str(plain_out), memory_limit or ""]
        if same_models:
            plain_cmd.append(str(models_script(root, Path(tmp) / "models.sql")))
        other_cmd = [*shlex.split(other), *funnel_cmd[len(funnel_command()) :]] if other else None
        funnel_times, plain_times, funnel_rss, plain_rss, other_times = [], [], [], [], []
        timed(funnel_cmd, env)  # warm the file cache and the compiled-project cache once
        timed(plain_cmd, env)
        if other_cmd:
            timed(other_cmd, env)
        for _ in range(runs):
            seconds, rss = timed(funnel_cmd, env)
            funnel_times.append(seconds)
            funnel_rss.append(rss)
            seconds, rss = timed(plain_cmd, env)  # it replaces its previous output, as a build does
            plain_times.append(seconds)
            plain_rss.append(rss)
            if other_cmd:
                other_times.append(timed(other_cmd, env)[0])
        rows = input_rows(raw)
        funnel_s, plain_s = statistics.median(funnel_times), statistics.median(plain_times)
        extra = (
            {"other_s": statistics.median(other_times), "other_ratio": statistics.median(other_times) / plain_s}
            if other_times
            else {}
        )
        return {
            **extra,
            "rows": rows,
            "funnel_s": funnel_s,
            "plain_s": plain_s,
            "ratio": funnel_s / plain_s,
            "funnel_rss": max(funnel_rss),
            "plain_rss": max(plain_rss),
            "rows_per_s": rows / funnel_s,
        }


def versus(raw: Path, other: str, runs: int, other_flags: tuple[str, ...] = (), other_sql: Path | None = None) -> None:
    """Alternate `funnel build` of this checkout with another installation's (e.g. the base
    commit's, in its own venv) on the same export; print medians of wall and CPU time.
    With `other_sql` the other builds that project's models (e.g. the base commit's sql/,
    to measure what new models cost) in a project of its own; else both build this sql/."""
    with tempfile.TemporaryDirectory(prefix="funnel-bench-") as tmp:
        root = project(Path(tmp), None, None)
        envs = {"this": process_env(FUNNEL_PROJECT_DIR=str(root)), "other": process_env(FUNNEL_PROJECT_DIR=str(root))}
        if other_sql is not None:
            other_root = project(Path(tmp) / "other", None, None, sql=other_sql)
            envs["other"] = process_env(FUNNEL_PROJECT_DIR=str(other_root))
        args = ["build", "--env", "bench", "--raw-data", str(raw)]
        commands = {"this": [*funnel_command(), *args, "--full-refresh"], "other": [other, *args, *other_flags]}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for name, command in commands.items():
            timed_cpu(command, envs[name])  # warm the file cache and the compiled-project cache
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(timed_cpu(command, envs[name]))
    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    print(f"Machine: {machine()}; median of {runs} alternating runs; other = {other}.\n")
    print("| input | this build | other build | ratio | this CPU | other CPU | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {raw.name} | {wall['this']:.2f} s | {wall['other']:.2f} s | {wall['this'] / wall['other']:.3f} | "
        f"{cpu['this']:.2f} s | {cpu['other']:.2f} s | {cpu['this'] / cpu['other']:.3f} |"
    )


def timed_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd`; return (wall seconds, CPU seconds: user + system of the process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode() if proc.stderr else ''}")
    return seconds, usage.ru_utime + usage.ru_stime


def export_for(deals: int, seed: int = 42) -> Path:
    out = DATA / f"deals-{deals}-seed-{seed}"
    if not (out / "users.csv").exists():
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "funnel", "generate", "--deals", str(deals), "--seed", str(seed), "--out", str(out)],
            check=True,
            env=process_env(FUNNEL_PROJECT_DIR=str(REPO)),
        )
        print(f"generated {deals:,} deals in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return out


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import duckdb

    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, {platform.system()} {platform.release()}"
    )


def print_table(results: list[tuple[str, dict[str, float]]], runs: int) -> None:
    print(f"Machine: {machine()}; median of {runs} alternating runs per row.\n")
    print("| input | input rows | funnel build | plain DuckDB | ratio | peak memory funnel / plain | rows/s (funnel) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results:
        print(
            f"| {name} | {r['rows']:,} | {r['funnel_s']:.2f} s | {r['plain_s']:.2f} s | {r['ratio']:.2f} | "
            f"{r['funnel_rss']:.0f} / {r['plain_rss']:.0f} MiB | {r['rows_per_s']:,.0f} |"
        )
    for name, r in results:
        if "other_s" in r:
            print(f"\n{name}: the other funnel {r['other_s']:.2f} s, ratio {r['other_ratio']:.2f} (same rounds)")


EXPORT_MODEL = """
select
    i as id,
    'deal ' || (i % 9973)::varchar as name,
    timestamp '2024-01-01' + to_seconds(i) as changed_at,
    (i % 1000 / 10)::decimal(5, 1) as amount,
    i % 3 = 0 as is_won,
    date '2024-01-01' + (i % 400)::int as day,
from range({rows}) as t(i)
"""
PG_TABLE = "(id bigint, name text, changed_at timestamp, amount numeric(5,1), is_won boolean, day date)"


def export_case(rows: int, runs: int) -> None:
    """`funnel export` of a `rows`-row model against psql \\copy of the same data as CSV."""
    import duckdb
    import psycopg

    schema = "funnel_bench_export"
    pg_env = {
        k: os.environ.get(k, d)
        for k, d in (("PGHOST", "127.0.0.1"), ("PGPORT", "5432"), ("PGUSER", "postgres"), ("PGDATABASE", "postgres"))
    }
    with tempfile.TemporaryDirectory(prefix="funnel-bench-") as tmp:
        root = project(Path(tmp), None, None)
        (root / "sql" / "reporting" / "bench_rows.sql").write_text(EXPORT_MODEL.format(rows=rows))
        (root / "environments.toml").write_text(
            (root / "environments.toml").read_text().replace("public_pipedrive_analytics", schema)
        )
        env = process_env(**pg_env, FUNNEL_PROJECT_DIR=str(root))
        subprocess.run(
            [sys.executable, "-m", "funnel", "build", "--env", "bench", "--raw-data", str(REPO / "raw_data")],
            env=env,
            check=True,
            capture_output=True,
        )
        csv_path = Path(tmp) / "bench_rows.csv"
        with duckdb.connect(str(root / "target" / "bench.duckdb"), read_only=True) as con:
            con.execute(f"copy {schema}.bench_rows to '{csv_path}' (format csv, header false)")
        conninfo = " ".join(f"{k[2:].lower().replace('database', 'dbname')}={v}" for k, v in pg_env.items())
        with psycopg.connect(conninfo, autocommit=True) as pg:
            pg.execute("create schema if not exists funnel_bench_psql")
            pg.execute(f"drop table if exists funnel_bench_psql.bench_rows; create table funnel_bench_psql.bench_rows {PG_TABLE}")
            funnel_cmd = [*funnel_command(), "export", "--env", "bench", "--select", "bench_rows"]
            psql_cmd = [
                "psql",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "truncate funnel_bench_psql.bench_rows",
                "-c",
                f"\\copy funnel_bench_psql.bench_rows from '{csv_path}' csv",
            ]
            funnel_times, psql_times = [], []
            timed(funnel_cmd, env)
            for _ in range(runs):
                funnel_times.append(timed(funnel_cmd, env)[0])
                psql_times.append(timed(psql_cmd, env)[0])
            count = pg.execute(f"select count(*) from {schema}.bench_rows").fetchone()
            pg.execute(f"drop schema {schema} cascade")
            pg.execute("drop schema funnel_bench_psql cascade")
    f, p = statistics.median(funnel_times), statistics.median(psql_times)
    print(f"Machine: {machine()}; PostgreSQL on 127.0.0.1; median of {runs} alternating runs.\n")
    print("| rows | funnel export (whole process) | psql \\copy of the same CSV | ratio |")
    print("|---:|---:|---:|---:|")
    print(f"| {count[0] if count else 0:,} | {f:.2f} s | {p:.2f} s | {f / p:.2f} |")


def plan_case(raw: Path, runs: int) -> None:
    """The plan's savings on one export, whole process, alternating in each round: a full
    build (--full-refresh), a build after editing one reporting model, and a build with
    nothing changed. Also the committed file's size after each, and peak memory."""
    with tempfile.TemporaryDirectory(prefix="funnel-bench-") as tmp:
        root = project(Path(tmp), None, None)
        env = process_env(FUNNEL_PROJECT_DIR=str(root))
        base = [*funnel_command(), "build", "--env", "bench", "--raw-data", str(raw)]
        model = root / "sql" / "reporting" / "rep_sales_funnel_monthly.sql"
        database = root / "target" / "bench.duckdb"
        cases = {"full build": [*base, "--full-refresh"], "one reporting model edited": base, "nothing changed": base}
        times: dict[str, list[float]] = {name: [] for name in cases}
        rss: dict[str, float] = dict.fromkeys(cases, 0.0)
        sizes: list[tuple[str, int]] = []
        timed(cases["full build"], env)  # warm the file cache and the compiled-project cache
        for i in range(runs):
            for name, command in cases.items():
                if name == "one reporting model edited":
                    model.write_text(model.read_text() + f"\n-- edit {i}\n")
                seconds, peak = timed(command, env)
                times[name].append(seconds)
                rss[name] = max(rss[name], peak)
                sizes.append((name, database.stat().st_size))
    full = statistics.median(times["full build"])
    print(f"Machine: {machine()}; {raw.name}: {input_rows(raw):,} input rows; median of {runs} alternating rounds.\n")
    print("| build | time | share of a full build | peak memory |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} s | {statistics.median(ts) / full:.0%} | {rss[name]:,.0f} MiB |")
    print("\nCommitted file after each build (MB): " + ", ".join(f"{size / 1e6:.1f} ({name})" for name, size in sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="case", required=True)
    build = sub.add_parser("build", help="the reference export (or any --raw-data)")
    build.add_argument("--raw-data", type=Path, default=REPO.parent / "shared" / "raw_data")
    build.add_argument("--runs", type=int, default=7)
    build.add_argument("--same-models", action="store_true", help="the plain script builds every model, not one report")
    build.add_argument(
        "--other", default=None, help='another funnel command to run in the same rounds (split like a shell: "python x.py")'
    )
    scale = sub.add_parser("scale", help="generated exports of growing size")
    scale.add_argument("--deals", default="10000,100000,1000000", help="comma-separated deal counts")
    scale.add_argument("--runs", type=int, default=3)
    scale.add_argument("--memory-limit", default=None, help="e.g. 1GB, for funnel and the plain script alike")
    scale.add_argument("--threads", type=int, default=None)
    scale.add_argument("--same-models", action="store_true", help="the plain script builds every model, not one report")
    export = sub.add_parser("export", help="funnel export of a large table against psql \\copy")
    export.add_argument("--rows", type=int, default=1_000_000)
    export.add_argument("--runs", type=int, default=5)
    other = sub.add_parser("versus", help="this checkout's funnel build against another installation's")
    other.add_argument("--other", required=True, help="the other funnel executable, e.g. a base commit's venv")
    other.add_argument("--deals", type=int, default=1_000_000)
    other.add_argument("--runs", type=int, default=5)
    other.add_argument("--other-full-refresh", action="store_true", help="the other funnel has a plan too: force its full build")
    other.add_argument(
        "--other-sql", type=Path, default=None, help="the other builds this sql/ folder (default: this checkout's)"
    )
    planned = sub.add_parser("plan", help="full build vs one model edited vs nothing changed")
    planned.add_argument("--deals", type=int, default=1_000_000)
    planned.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    if args.case == "plan":
        plan_case(export_for(args.deals), args.runs)
        return

    if args.case == "versus":
        flags = ("--full-refresh",) if args.other_full_refresh else ()
        versus(export_for(args.deals), args.other, args.runs, flags, args.other_sql)
        return

    if args.case == "export":
        export_case(args.rows, args.runs)
        return

    if args.case == "build":
        if not (args.raw_data / "deal_changes.csv").exists():
            raise SystemExit(f"{args.raw_data}: no export there; pass --raw-data")
        print_table(
            [(str(args.raw_data), compare(args.raw_data, args.runs, same_models=args.same_models, other=args.other))], args.runs
        )
    else:
        results = []
        for deals in (int(d) for d in args.deals.split(",")):
            raw = export_for(deals)
            results.append((f"{deals:,} deals", compare(raw, args.runs, args.memory_limit, args.threads, args.same_models)))
        print_table(results, args.runs)
        if args.memory_limit:
            print(f"\nBoth ran with DuckDB memory_limit = {args.memory_limit}.")


if __name__ == "__main__":
    main()
