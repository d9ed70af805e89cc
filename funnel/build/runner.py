"""`funnel build` on any engine: plan -> lock -> load -> run -> test -> record -> publish.

The plan (funnel/build/plan.py) says what to load, run and test; the env's engine
(funnel/build/engine.py: DuckDB, or Spark) does it in a workspace of its own, which becomes
the published build only when every model ran and no data test of severity `error` failed.
Nothing to do: nothing is written. This is the one build loop; an engine only answers
its steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from funnel import __version__, atomic, workdir
from funnel.build import plan, record
from funnel.build.engine import Engine, Work, engine_for
from funnel.engine import database
from funnel.errors import ConfigError, TestFailure
from funnel.project import checks
from funnel.project.config import require_outside_export

if TYPE_CHECKING:
    import duckdb

    from funnel.project.config import Environment
    from funnel.project.manifest import Manifest
    from funnel.project.selectors import Selector
    from funnel.project.sources import Source

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
    engine: Engine | None = None,
) -> plan.Plan:
    """What a build would do now (for `--dry-run`, and as the build's first step).

    An engine that cannot build incrementally (Spark) always plans a full build, and refuses
    a selection. Raises ConfigError when the env's `database` names a file a build must not
    replace.
    """
    engine = engine or engine_for(manifest.env)
    if not engine.incremental:
        if select is not None or exclude is not None:
            raise ConfigError(
                f"env '{manifest.env.name}' builds on {engine.name}, which always builds everything; drop --select and --exclude."
            )
        full_refresh = True
    require_replaceable(manifest.env)
    chosen = manifest.graph.select(select, exclude) if select is not None or exclude is not None else None
    # A full refresh owes nothing to the last build: its record is not even opened.
    return plan.make(manifest, None if full_refresh else _previous(manifest), chosen, full_refresh, known)


def require_replaceable(env: Environment) -> None:
    """Refuse a build of `env` whose `database` names a file a build must not replace.

    A build replaces the file by renaming a new one over it, whatever it held: a path that
    names the user's CSV or notes by mistake, a DuckDB database funnel did not write, or a
    place inside the export folder (where the lock and temporary files would land among
    the export's files) is a ConfigError naming the key, and nothing is written. A damaged
    build of funnel's is reported by `read`, with the way out (funnel clean).
    """
    import duckdb

    env.export_folder()  # an env that names no export builds nothing: say that first
    require_outside_export(env)
    path = env.database
    where = f"{env.config_path}: [{env.name}] database {path}"
    instead = f"point database at a file of its own, e.g. target/{env.name}.duckdb"
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_file():
        raise ConfigError(f"{where} is not a regular file, and a build would replace it; {instead}.")
    if record.committed(env) is not None:
        return  # the last build of this env
    if not workdir.is_duckdb(path):
        raise ConfigError(
            f"{where} is not a DuckDB file, and a build would replace it; if the file is yours, {instead}; "
            "if it is a damaged build, delete it."
        )
    with database.read(env) as con:  # a damaged or locked file is reported as such
        try:
            ours = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = 'build_info'",
                [database.INFO_SCHEMA],
            ).fetchone()
        except duckdb.Error as e:
            raise database.unreadable(env, e) from None
    if not ours or not ours[0]:
        raise ConfigError(
            f"{where} is a DuckDB database funnel did not build (it has no {database.INFO_SCHEMA}.build_info), and a build "
            f"would replace it; {instead}."
        )


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
    engine: Engine | None = None,
) -> BuildResult:
    """Carry out the plan for `manifest.env` on its engine (or `engine`) and publish it if
    every error test passes.

    Raises SourceError, ModelError or TestFailure, in which case the published build is
    exactly as it was before.
    """
    started = time.perf_counter()
    env = manifest.env
    engine = engine or engine_for(env)
    decided = make_plan(manifest, select, full_refresh, exclude, engine=engine)
    engine.prepare(manifest)
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
        decided = make_plan(manifest, select, full_refresh, exclude, known=decided.fingerprints, engine=engine)
        if on_plan:
            on_plan(decided)
        result = BuildResult(manifest, decided)

        def step_done(step: Step) -> None:
            result.steps.append(step)
            if on_step:
                on_step(step)

        with engine.start(manifest, decided) as work:
            _run(work, result, step_done)
            _test(work, result, on_test)
            result.seconds = time.perf_counter() - started
            made = make_record(result, select, **work.record_fields)
            work.finish(lambda con: record.write(con, made))
            # A signal arriving now waits until the caller knows the new build is published, so
            # whatever it prints about the build is true.
            with atomic.signals_deferred():
                work.publish()
                workdir.save_failures(env, [])  # the failing rows of an earlier build are history now
                if on_published:
                    on_published()
    result.seconds = time.perf_counter() - started
    return result


def _run(work: Work, result: BuildResult, step_done: Callable[[Step], None]) -> None:
    """Load the plan's sources and run its models, in order."""
    manifest, decided = result.manifest, result.plan

    def loaded(source: Source, rows: int, seconds: float) -> None:
        step_done(Step(f"{source.source_name}.{source.table}", "source", seconds, rows))

    wanted = set(decided.names("source", "load"))
    work.load_sources([s for s in manifest.sources if s.table in wanted], loaded)
    for name in decided.names("model", "run"):
        model = manifest.graph.models[name]
        started = time.perf_counter()
        rows = work.run_model(model)
        kind: StepKind = "seed" if model.is_seed else "view" if model.materialized == "view" else "table"
        step_done(Step(name, kind, time.perf_counter() - started, rows))


def _test(work: Work, result: BuildResult, on_test: Callable[[checks.TestResult], None] | None) -> None:
    """Run the plan's tests; keep the rows that break an error test and stop, if one fails."""
    manifest, decided = result.manifest, result.plan
    to_run = set(decided.names("test", "test"))
    chosen = [t for t in manifest.tests if t.name in to_run]
    fresh = work.run_tests(chosen, sum(_source_rows(result).values()))
    result.tests = _merge_results(manifest, decided, fresh)
    for test_result in result.tests:
        if on_test:
            on_test(test_result)
    failed = [t for t in result.tests if t.status == "ERROR"]
    if failed:
        rows = work.failing_rows(failed)
        workdir.save_failures(manifest.env, rows)
        raise TestFailure(_failure_message(failed), rows)


def _previous(manifest: Manifest) -> plan.Previous | None:
    found = record.committed(manifest.env)
    return None if found is None else plan.Previous.from_record(found)


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
