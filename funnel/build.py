"""`funnel build`: sources -> seeds -> staging -> intermediate -> reporting -> data tests.

All or nothing: everything happens in a temporary DuckDB file that replaces the
committed one only when every model ran and no data test of severity `error` failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from funnel import checks, database, models
from funnel.config import Environment, Project
from funnel.errors import BuildMissing, FunnelError, ModelError, TestFailure, first_line
from funnel.manifest import compile_project
from funnel.quoting import quote_ident, relation
from funnel.sources import SOURCES, CsvLoad, load_csvs


@dataclass(frozen=True)
class Step:
    """One thing a build did: a source or seed loaded, or a model created."""

    name: str
    kind: str  # source | seed | view | table
    seconds: float
    rows: int | None = None


@dataclass
class BuildResult:
    env: Environment
    steps: list[Step] = field(default_factory=list)
    tests: list[checks.TestResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for t in self.tests if t.status == status)

    @property
    def source_rows(self) -> int:
        return sum(s.rows or 0 for s in self.steps if s.kind == "source")


def build(
    project: Project,
    env: Environment,
    select: str | None = None,
    wait: float = 0.0,
    on_step: Callable[[Step], None] | None = None,
    on_test: Callable[[checks.TestResult], None] | None = None,
) -> BuildResult:
    """Build `env` (all models, or those `select` picks) and commit it if every test passes.

    Raises SourceError, ModelError or TestFailure, in which case the committed build is
    exactly as it was before.
    """
    started = time.perf_counter()
    dag, tests = compile_project(project.sql_dir, env.schema, env.database.parent)
    chosen = dag.select(select)
    result = BuildResult(env)

    def record(step: Step) -> None:
        result.steps.append(step)
        if on_step:
            on_step(step)

    import duckdb

    with database.build_lock(env, wait):
        temp = database.temp_path(env.database)
        try:
            if select:
                if not env.database.exists():
                    raise BuildMissing(
                        f"--select builds on the last full build, and env '{env.name}' has none; "
                        f"run funnel build --env {env.name} first."
                    )
                database.copy_committed(env.database, temp)
            con = database.connect(temp, env)
            try:
                _load_sources(con, env, record)
                con.execute(f"create schema if not exists {quote_ident(env.schema)}")
                for name in chosen:
                    record(_run_model(con, dag.models[name], env.schema))
                result.tests = checks.run(con, tests, on_test)
                failed = [t for t in result.tests if t.status == "ERROR"]
                if failed:
                    raise TestFailure(_failure_message(failed))
                result.seconds = time.perf_counter() - started
                _write_build_info(con, result, select)
                con.execute("checkpoint")
            finally:
                con.close()
            database.commit(temp, env.database)
        except duckdb.Error as e:
            # Not the data's fault (a full disk, an I/O error, memory): say what DuckDB said.
            raise FunnelError(
                f"{temp}: DuckDB failed ({first_line(e)}); "
                "the last good build is unchanged. Check disk space and memory_limit, then rebuild."
            ) from None
        finally:
            database.remove_temp(temp)
    return result


def _load_sources(con, env: Environment, record: Callable[[Step], None]) -> None:  # type: ignore[no-untyped-def]
    con.execute(f"create schema if not exists {quote_ident(models.RAW_SCHEMA)}")
    loads = [
        CsvLoad(env.raw_data / s.file_name, relation(models.RAW_SCHEMA, s.table), s.columns, s.timestamp_format, s.conditional)
        for s in SOURCES
    ]
    names = {load.target: f"{models.RAW_SCHEMA}.{s.table}" for load, s in zip(loads, SOURCES, strict=True)}
    load_csvs(con, loads, lambda load, rows, seconds: record(Step(names[load.target], "source", seconds, rows)))


def _run_model(con, model: models.Model, schema: str) -> Step:  # type: ignore[no-untyped-def]
    import duckdb

    started = time.perf_counter()
    target = relation(schema, model.name)
    try:
        if model.is_seed:
            (rows,) = load_csvs(con, [CsvLoad(model.path, target, model.seed_columns)])
            return Step(model.name, "seed", time.perf_counter() - started, rows)
        if model.materialized == "view":
            con.execute(f"create or replace view {target} as {model.sql}")
            return Step(model.name, "view", time.perf_counter() - started)
        rows = con.execute(f"create or replace table {target} as {model.sql}").fetchone()[0]
    except duckdb.Error as e:
        raise ModelError(f"{model.path}: {first_line(e)}") from None
    return Step(model.name, "table", time.perf_counter() - started, rows)


def _failure_message(failed: list[checks.TestResult]) -> str:
    parts = [f"{r.test.name} ({r.error})" if r.error else f"{r.test.name} ({r.failures} rows)" for r in failed[:3]]
    more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
    return (
        f"{len(failed)} data test(s) failed: {', '.join(parts)}{more}; "
        "the last good build is unchanged. Inspect with funnel test after fixing the data."
    )


def _write_build_info(con, result: BuildResult, select: str | None) -> None:  # type: ignore[no-untyped-def]
    from funnel import __version__

    info = {
        "env": result.env.name,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "raw_data": str(result.env.raw_data),
        "select": select,
        "seconds": round(result.seconds, 3),
        "source_rows": result.source_rows,
        "tests": {s: result.count(s) for s in ("PASS", "WARN", "ERROR")},
        "funnel_version": __version__,
    }
    con.execute("create schema if not exists _funnel")
    con.execute("create or replace table _funnel.build_info as select ? as info", [json.dumps(info)])


def build_info(con) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """What `_write_build_info` stored in a committed build."""
    row = con.execute("select info from _funnel.build_info").fetchone()
    return json.loads(row[0]) if row else {}


def run_tests(
    project: Project, env: Environment, on_test: Callable[[checks.TestResult], None] | None = None
) -> list[checks.TestResult]:
    """Run every data test against the committed build of `env` (read-only)."""
    _, tests = compile_project(project.sql_dir, env.schema, env.database.parent)
    with database.read(env) as con:
        return checks.run(con, tests, on_test)
