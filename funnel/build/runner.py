"""`funnel build`: plan, then load -> run -> test -> publish.

The plan (funnel/build/plan.py) says what to load, run and test. Everything happens in a
temporary DuckDB file, a fresh one for a full build or a copy of the committed build for
an incremental one, that replaces the committed file only when every model ran and no
data test of severity `error` failed. Nothing to do: nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from funnel import __version__, atomic, workdir
from funnel.build import plan, record
from funnel.engine import database
from funnel.engine.loading import CsvLoad, load_csvs
from funnel.errors import FunnelError, ModelError, TestFailure, first_line
from funnel.project import checks, models
from funnel.quoting import quote_ident, relation

if TYPE_CHECKING:
    import duckdb

    from funnel.project.manifest import Manifest
    from funnel.project.selectors import Selector

StepKind = Literal["source", "seed", "view", "table"]


@dataclass(frozen=True)
class Step:
    """One thing a build did: a source or seed loaded, or a model created."""

    name: str
    kind: StepKind
    seconds: float
    rows: int | None = None


@dataclass
class BuildResult:
    manifest: Manifest
    plan: plan.Plan
    steps: list[Step] = field(default_factory=list)
    tests: list[checks.TestResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for t in self.tests if t.status == status)

    @property
    def source_rows(self) -> int:
        return sum(s.rows or 0 for s in self.steps if s.kind == "source")


def make_plan(
    manifest: Manifest,
    select: Selector | str | None = None,
    full_refresh: bool = False,
    exclude: Selector | str | None = None,
    known: dict[str, plan.Fingerprint] | None = None,
) -> plan.Plan:
    """What a build would do now (for `--dry-run`, and as the build's first step).

    Raises ConfigError when the env's `database` names a file a build must not replace.
    """
    database.require_replaceable(manifest.env)
    chosen = manifest.graph.select(select, exclude) if select is not None or exclude is not None else None
    # A full refresh owes nothing to the last build: its record is not even opened.
    return plan.make(manifest, None if full_refresh else _previous(manifest), chosen, full_refresh, known)


def build(
    manifest: Manifest,
    select: Selector | str | None = None,
    wait: float = 0.0,
    full_refresh: bool = False,
    on_plan: Callable[[plan.Plan], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    on_test: Callable[[checks.TestResult], None] | None = None,
    on_published: Callable[[], None] | None = None,
    exclude: Selector | str | None = None,
) -> BuildResult:
    """Carry out the plan for `manifest.env` and publish it if every error test passes.

    Raises SourceError, ModelError or TestFailure, in which case the committed build is
    exactly as it was before.
    """
    import duckdb

    started = time.perf_counter()
    env = manifest.env
    decided = make_plan(manifest, select, full_refresh, exclude)
    if decided.up_to_date:  # checked before taking the lock: an up-to-date build writes nothing
        if workdir.stale_temps(env):  # ... but what a killed build left behind goes
            with workdir.build_lock(env, wait):
                pass
        result = BuildResult(manifest, decided, tests=_reused_results(manifest, decided))
        if on_plan:
            on_plan(decided)
        result.seconds = time.perf_counter() - started
        return result
    with workdir.build_lock(env, wait):
        # Again: another build may have published meanwhile. The files are not hashed twice.
        decided = make_plan(manifest, select, full_refresh, exclude, known=decided.fingerprints)
        if on_plan:
            on_plan(decided)
        result = BuildResult(manifest, decided)

        def step_done(step: Step) -> None:
            result.steps.append(step)
            if on_step:
                on_step(step)

        temp = workdir.temp_path(env.database)
        try:
            if not decided.full:
                database.copy_committed(env.database, temp)
            con = database.connect(temp, env)
            try:
                _make_room(con, manifest, decided)
                _load_sources(con, manifest, decided, step_done)
                con.execute(f"create schema if not exists {quote_ident(env.schema)}")
                for name in decided.names("model", "run"):
                    step_done(_run_model(con, manifest.graph.models[name], env.schema))
                to_run = set(decided.names("test", "test"))
                chosen = [t for t in manifest.tests if t.name in to_run]
                fresh = checks.run(con, chosen, input_rows=sum(_source_rows(result).values()))
                result.tests = _merge_results(manifest, decided, fresh)
                for test_result in result.tests:
                    if on_test:
                        on_test(test_result)
                failed = [t for t in result.tests if t.status == "ERROR"]
                if failed:
                    rows = checks.failing_rows(con, failed)
                    workdir.save_failures(env, rows)
                    raise TestFailure(_failure_message(failed), rows)
                result.seconds = time.perf_counter() - started
                record.write(con, make_record(result, select))
                con.execute("checkpoint")
            finally:
                con.close()
            # A signal arriving now waits until the caller knows the new build is published, so
            # whatever it prints about the build is true.
            with atomic.signals_deferred():
                database.commit(temp, env.database)
                workdir.save_failures(env, [])  # the failing rows of an earlier build are history now
                if on_published:
                    on_published()
        except duckdb.Error as e:
            # Not the data's fault (a full disk, an I/O error, memory): say what DuckDB said.
            raise FunnelError(
                f"{temp.parent}: DuckDB failed while building env '{env.name}' ({first_line(e)}); "
                "the last good build is unchanged. Check free disk space there and memory_limit, then rebuild."
            ) from None
        finally:
            workdir.remove_temp(temp)
    return result


def _previous(manifest: Manifest) -> plan.Previous | None:
    found = record.committed(manifest.env)
    return None if found is None else plan.Previous.from_record(found)


def _make_room(con: duckdb.DuckDBPyConnection, manifest: Manifest, decided: plan.Plan) -> None:
    """In a copied build, drop what is about to be replaced and checkpoint: the new data
    then reuses the freed blocks, and the file does not grow from one build to the next."""
    if decided.full:
        return
    kinds = dict(con.execute("select table_schema || '.' || table_name, table_type from information_schema.tables").fetchall())
    by_table = {s.table: s for s in manifest.sources}
    doomed = [(by_table[t].source_name, t) for t in decided.names("source", "load")]
    doomed += [(manifest.env.schema, n) for n in decided.names("model", "run")]
    for schema, name in doomed:
        kind = kinds.get(f"{schema}.{name}")
        if kind:
            con.execute(f"drop {'view' if kind == 'VIEW' else 'table'} {relation(schema, name)}")
    con.execute("checkpoint")


def _load_sources(
    con: duckdb.DuckDBPyConnection, manifest: Manifest, decided: plan.Plan, step_done: Callable[[Step], None]
) -> None:
    folder = manifest.env.export_folder()
    wanted = set(decided.names("source", "load"))
    chosen = [s for s in manifest.sources if s.table in wanted]
    for schema in sorted({s.source_name for s in chosen}):
        con.execute(f"create schema if not exists {quote_ident(schema)}")
    loads = [
        CsvLoad(
            folder / s.file_name,
            relation(s.source_name, s.table),
            s.columns,
            s.timestamp_format,
            s.conditional,
            s.optional,
            s.patterns,
            s.optional_columns,
        )
        for s in chosen
    ]
    names = {load.target: f"{s.source_name}.{s.table}" for load, s in zip(loads, chosen, strict=True)}
    load_csvs(con, loads, lambda load, rows, seconds: step_done(Step(names[load.target], "source", seconds, rows)))


def _run_model(con: duckdb.DuckDBPyConnection, model: models.Model, schema: str) -> Step:
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
        row = con.execute(f"create or replace table {target} as {model.sql}").fetchone()
    except duckdb.Error as e:
        if database.is_machine_fault(e):
            raise  # a full disk or too little memory is not the model's fault: build() says so
        raise ModelError(models.describe_sql_error(model, str(e))) from None
    return Step(model.name, "table", time.perf_counter() - started, int(row[0]) if row else 0)


def _source_rows(result: BuildResult) -> dict[str, int]:
    """The rows of each source of the build: loaded now, or kept from the last build."""
    loaded = {s.name.split(".")[-1]: s.rows or 0 for s in result.steps if s.kind == "source"}
    return loaded if result.plan.full else {**result.plan.previous.record.source_rows, **loaded}


def _reused_results(manifest: Manifest, decided: plan.Plan) -> list[checks.TestResult]:
    """The committed build's results of the tests the plan does not rerun."""
    recorded = decided.previous.tests
    rerun = set(decided.names("test", "test"))
    return [
        checks.TestResult(t, int(recorded[t.name]["failures"]), 0.0, recorded[t.name].get("error"), reused=True)
        for t in manifest.tests
        if t.name in recorded and t.name not in rerun
    ]


def _merge_results(manifest: Manifest, decided: plan.Plan, fresh: list[checks.TestResult]) -> list[checks.TestResult]:
    """Every test's result in project order: the ones just run, the others as recorded."""
    by_name = {r.test.name: r for r in [*fresh, *_reused_results(manifest, decided)]}
    return [by_name[t.name] for t in manifest.tests if t.name in by_name]


def _failure_message(failed: list[checks.TestResult]) -> str:
    return f"{checks.failed_summary(failed)}; the last good build is unchanged. The failing rows: funnel test --failures."


def make_record(result: BuildResult, select: Selector | str | None, **engine: Any) -> record.BuildRecord:
    """What the build was made of, for the next plan, `funnel status` and readers (every engine's)."""
    manifest, decided = result.manifest, result.plan
    models_fp = dict(decided.previous.models) if not decided.full else {}
    for name in decided.names("model", "run"):
        models_fp[name] = plan.model_fingerprint(manifest, name)
    return record.BuildRecord(
        env=manifest.env.name,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        raw_data=str(manifest.env.export_folder()),
        select=None if select is None else str(select),
        vars=manifest.vars,
        full=decided.full,
        seconds=round(result.seconds, 3),
        source_rows=_source_rows(result),
        tests={s: result.count(s) for s in record.STATUSES},
        funnel_version=__version__,
        fingerprints=plan.fingerprints_json(decided.fingerprints),
        models={name: models_fp[name] for name in manifest.graph.order if name in models_fp},
        test_results={
            r.test.name: {
                "fingerprint": plan.test_fingerprint(r.test.sql, r.test.severity),
                "failures": r.failures,
                "error": r.error,
            }
            for r in result.tests
        },
        **engine,
    )


def _recorded_rows(con: duckdb.DuckDBPyConnection) -> int | None:
    """The input rows the committed build recorded (None if it has no record)."""
    import duckdb

    try:
        found = record.read(con)
    except duckdb.Error:
        return None
    return found.input_rows if found else None


def run_tests(
    manifest: Manifest,
    on_test: Callable[[checks.TestResult], None] | None = None,
    select: Selector | str | None = None,
    exclude: Selector | str | None = None,
    failures: int = 0,
) -> tuple[list[checks.TestResult], list[checks.FailingRows]]:
    """Run the data tests (those on the selected models) against the committed build.

    With `failures` > 0, also return that many failing rows of each failing test.
    """
    tests = manifest.tests
    if select is not None or exclude is not None:
        chosen = set(manifest.graph.select(select, exclude))
        # A test reading sources only (no model) is about no selected model: --select leaves
        # it out, --exclude alone keeps it.
        tests = tuple(t for t in tests if set(t.depends_on) & chosen or (not t.depends_on and select is None))
    with database.read(manifest.env) as con:
        results = checks.run(con, tests, on_test, input_rows=_recorded_rows(con))
        rows = checks.failing_rows(con, results, failures) if failures else []
    return results, rows
