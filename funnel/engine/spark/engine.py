"""`funnel build` on Apache Spark, for an environment with `engine = "spark"`.

The same compiled project (`Manifest`) as a DuckDB build: sources are read strictly
(funnel/engine/spark/sources.py), models and data tests run as Spark SQL translated from the
project's DuckDB SQL (funnel/engine/spark/sql.py), and the outputs are Parquet under the
warehouse, published all-or-nothing:

    <warehouse>/<env>/builds/<id>/<model>/part-*.parquet   one folder per build
    <warehouse>/<env>/CURRENT                              the published build's id

A build writes a new folder and switches CURRENT (a temporary file renamed over it) only
when every model ran and no data test of severity error failed; the previous build is
kept, older ones are removed. Then the env's `database` becomes a small DuckDB file of
views over the published Parquet with the same `_funnel.build_info` a DuckDB build writes,
so show, test, export, report and parity read a Spark build like any other.

pyspark and sqlglot are imported only by funnel/spark*.py: without them
(`pip install 'pipedrive-funnel[spark]'`) every DuckDB command works as before.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from funnel import atomic, workdir
from funnel.build import plan, record
from funnel.build.runner import BuildResult, Step, make_record
from funnel.engine import database
from funnel.engine.spark.sources import SparkCsv, load, table
from funnel.engine.spark.sql import compiled_sql, view_name
from funnel.engine.spark.warehouse import Warehouse, local_path
from funnel.errors import ConfigError, FunnelError, ModelError, TestFailure, first_line
from funnel.project import checks, models
from funnel.project.config import Environment
from funnel.quoting import quote_ident, quote_literal, relation

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from funnel.project.manifest import Manifest

__all__ = ["build", "compiled_sql", "session", "stop"]

# Settings the numbers depend on: timestamps without time zone, read and written as such
# (Parquet TIMESTAMP, which DuckDB reads as TIMESTAMP), and month boundaries in UTC.
FIXED_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.ansi.enabled": "true",
}
DEFAULT_SETTINGS = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "8"}
LOG4J = "rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\nappender.console.type = Console\n"
LOG4J += "appender.console.name = console\nappender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
TEST_THREADS = 4  # data tests submitted to Spark at once
RAW_FOLDER = "_raw"  # builds/<id>/_raw/<source table>: the typed sources
_sessions: dict[str, SparkSession] = {}


def build(
    manifest: Manifest,
    wait: float = 0.0,
    on_step: Callable[[Step], None] | None = None,
    on_test: Callable[[checks.TestResult], None] | None = None,
    on_published: Callable[[], None] | None = None,
    keep_session: bool = False,
) -> BuildResult:
    """Build `manifest.env` on Spark and publish it if every error test passes.

    Always a full build. Raises SourceError, ModelError or TestFailure, in which case the
    published build (CURRENT and the env's database) is exactly as it was.
    """
    started = time.perf_counter()
    env = manifest.env
    database.require_replaceable(env)
    sql = compiled_sql(manifest)  # before Spark starts: untranslatable SQL fails fast
    decided = plan.make(manifest, None, full_refresh=True)
    result = BuildResult(manifest, decided)

    def step_done(step: Step) -> None:
        result.steps.append(step)
        if on_step:
            on_step(step)

    with workdir.build_lock(env, wait):
        spark = session(env)
        try:
            store = Warehouse(spark, env)
            store.remove_unpublished()
            build_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
            folder = store.build_folder(build_id)
            try:
                run = spark.newSession()  # its own temporary views
                _load_sources(run, manifest, folder, step_done)
                for name in manifest.graph.order:
                    step_done(_run_model(run, manifest, manifest.graph.models[name], folder, sql))
                result.tests = _run_tests(run, manifest, sql, on_test)
                failed = [t for t in result.tests if t.status == "ERROR"]
                if failed:
                    raise TestFailure(_failure_message(failed))
                result.seconds = time.perf_counter() - started
                temp = workdir.temp_path(env.database)
                try:
                    made = make_record(result, None, engine="spark", warehouse=store.root, build=build_id)
                    _write_database(temp, manifest, folder, made)
                    with atomic.signals_deferred():
                        store.publish(build_id)
                        database.commit(temp, env.database)
                        if on_published:
                            on_published()
                finally:
                    workdir.remove_temp(temp)
            except BaseException as e:
                if store.current() != build_id:
                    store.remove(build_id)
                if _is_spark_error(e):
                    # Not the data's fault (memory, disk, a lost executor): say what Spark said.
                    raise FunnelError(
                        f"Spark failed while building env '{env.name}' ({first_line(e)}); the last good build is "
                        f"unchanged. Spark's log: {workdir.spark_log(env)}."
                    ) from None
                raise
            store.remove_unpublished()
        finally:
            if not keep_session:
                stop()
    result.seconds = time.perf_counter() - started
    return result


def _is_spark_error(error: BaseException) -> bool:
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return isinstance(error, PySparkException | Py4JError)


def session(env: Environment) -> SparkSession:
    """A SparkSession for `env` (one per master for the process); FunnelError when Spark cannot start."""
    for key in env.spark:
        if key in FIXED_SETTINGS and env.spark[key] != FIXED_SETTINGS[key]:
            raise ConfigError(
                f"{env.config_path}: [{env.name}.spark] {key} must stay {FIXED_SETTINGS[key]!r}: "
                "funnel's numbers depend on it; remove the key."
            )
    if env.master in _sessions:
        return _sessions[env.master]
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            f'{env.config_path}: [{env.name}] has engine = "spark", but pyspark is not installed; '
            "run pip install 'pipedrive-funnel[spark]' (needs Java 17 or newer)."
        ) from None
    logs = workdir.spark_log(env)
    logs.parent.mkdir(parents=True, exist_ok=True)
    log4j = workdir.spark_settings(env)
    log4j.write_text(LOG4J)
    builder = SparkSession.builder.master(env.master).appName(f"funnel {env.name}")
    settings = {**DEFAULT_SETTINGS, **env.spark, **FIXED_SETTINGS}
    java_options = settings.get("spark.driver.extraJavaOptions", "")
    settings["spark.driver.extraJavaOptions"] = f"{java_options} -Dlog4j2.configurationFile=file:{log4j}".strip()
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        with _output_to(logs):  # the JVM inherits these: its chatter goes to the log, not the terminal
            spark = builder.getOrCreate()
    except Exception as e:
        raise FunnelError(
            f"Spark did not start for env '{env.name}' ({first_line(e)}); check that `java -version` shows Java 17 "
            f"or newer and master {env.master!r} answers. Spark's log: {logs}."
        ) from None
    _sessions[env.master] = spark
    return spark


def stop() -> None:
    """Stop the Spark sessions this process started."""
    while _sessions:
        _, spark = _sessions.popitem()
        with contextlib.suppress(Exception):
            spark.stop()


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    saved = [os.dup(1), os.dup(2)]
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def _load_sources(spark: SparkSession, manifest: Manifest, folder: str, step_done: Callable[[Step], None]) -> None:
    export = manifest.env.export_folder()
    for source in manifest.sources:
        started = time.perf_counter()
        out = f"{folder}/{RAW_FOLDER}/{source.table}"
        csv = SparkCsv(
            export / source.file_name,
            source.columns,
            source.timestamp_format,
            source.conditional,
            source.optional,
            source.patterns,
            source.optional_columns,
        )
        rows = load(spark, csv, out)
        table(spark, out, source.columns).createOrReplaceTempView(view_name(models.RAW_SCHEMA, source.table))
        step_done(Step(f"{models.RAW_SCHEMA}.{source.table}", "source", time.perf_counter() - started, rows))


def _run_model(spark: SparkSession, manifest: Manifest, model: models.Model, folder: str, sql: dict[str, str]) -> Step:
    from pyspark.errors import PySparkException

    started = time.perf_counter()
    view, out = view_name(manifest.env.schema, model.name), f"{folder}/{model.name}"
    if model.is_seed:
        rows = load(spark, SparkCsv(model.path, model.seed_columns), out)
        table(spark, out, model.seed_columns).createOrReplaceTempView(view)
        return Step(model.name, "seed", time.perf_counter() - started, rows)
    try:
        frame = spark.sql(sql[model.name])
        if model.materialized == "view":
            frame.createOrReplaceTempView(view)
            return Step(model.name, "view", time.perf_counter() - started)
        frame.write.mode("errorifexists").parquet(out)
        written = spark.read.parquet(out)
        written.createOrReplaceTempView(view)
        rows = written.count()
    except PySparkException as e:
        raise ModelError(f"{model.path}: Spark: {first_line(e)}") from None
    return Step(model.name, "table", time.perf_counter() - started, int(rows))


def _run_tests(
    spark: SparkSession, manifest: Manifest, sql: dict[str, str], on_test: Callable[[checks.TestResult], None] | None
) -> list[checks.TestResult]:
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.errors import PySparkException

    def run(test: checks.DataTest) -> checks.TestResult:
        started = time.perf_counter()
        try:
            row = spark.sql(f"select count(*) from ({sql[test.name]}) as failing").collect()
            return checks.TestResult(test, int(row[0][0]), time.perf_counter() - started)
        except PySparkException as e:
            return checks.TestResult(test, 0, time.perf_counter() - started, error=f"Spark: {first_line(e)}")

    # Most tests are small jobs: several at once keep the executors busy. Reported in project order.
    results = []
    with ThreadPoolExecutor(max_workers=TEST_THREADS) as pool:
        for result in pool.map(run, manifest.tests):
            results.append(result)
            if on_test:
                on_test(result)
    return results


def _failure_message(failed: list[checks.TestResult]) -> str:
    return f"{checks.failed_summary(failed)}; the last good build is unchanged. Inspect with funnel test after fixing the data."


def _write_database(path: Path, manifest: Manifest, folder: str, made: record.BuildRecord) -> None:
    """The env's DuckDB file for readers: views over the build's Parquet, and build_info.

    Sources and seeds are cast to their declared DuckDB types (ENUM, JSON); staging views
    are the models' own DuckDB SQL over them, as in a DuckDB build.
    """
    import duckdb

    env, folder = manifest.env, local_path(folder)
    con = duckdb.connect(str(path))
    try:
        con.execute(f"create schema {quote_ident(models.RAW_SCHEMA)}")
        con.execute(f"create schema {quote_ident(env.schema)}")
        for source in manifest.sources:
            parquet = f"{folder}/{RAW_FOLDER}/{source.table}"
            con.execute(f"create view {relation(models.RAW_SCHEMA, source.table)} as {_typed(parquet, source.columns)}")
        for name in manifest.graph.order:
            model, target = manifest.graph.models[name], relation(env.schema, name)
            if model.is_seed:
                con.execute(f"create view {target} as {_typed(f'{folder}/{name}', model.seed_columns)}")
            elif model.materialized == "view":
                con.execute(f"create view {target} as {model.sql}")
            else:
                con.execute(f"create view {target} as select * from read_parquet({quote_literal(f'{folder}/{name}/*.parquet')})")
        record.write(con, made)
        con.execute("checkpoint")
    except duckdb.Error as e:
        raise FunnelError(
            f"{path.parent}: cannot write the env's database ({first_line(e)}); the last good build is unchanged."
        ) from None
    finally:
        con.close()


def _typed(folder: str, columns: dict[str, str]) -> str:
    select = ", ".join(f"cast({quote_ident(c)} as {t}) as {quote_ident(c)}" for c, t in columns.items())
    return f"select {select} from read_parquet({quote_literal(f'{folder}/*.parquet')})"
