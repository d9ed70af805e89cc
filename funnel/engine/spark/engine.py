"""`funnel build` on Apache Spark, for an environment with `engine = "spark"`.

The build loop is funnel/build/runner.py's, as for DuckDB; SparkEngine answers its steps
(funnel/build/engine.py). The same compiled project (`Manifest`) as a DuckDB build: sources are read strictly
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

pyspark and sqlglot are imported only under funnel/engine/spark/: without them
(`pip install 'pipedrive-funnel[spark]'`) every DuckDB command works as before.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import workdir
from funnel.engine import database
from funnel.engine.spark.sources import SparkCsv, load, table
from funnel.engine.spark.sql import compiled_sql, view_name
from funnel.engine.spark.warehouse import Warehouse, local_path
from funnel.errors import ConfigError, FunnelError, ModelError, first_line
from funnel.project import checks, models
from funnel.project.config import Environment
from funnel.quoting import quote_ident, quote_literal, relation

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

    from funnel.build.engine import OnLoaded
    from funnel.build.plan import Plan
    from funnel.project.manifest import Manifest
    from funnel.project.sources import Source

__all__ = ["SparkEngine", "compiled_sql", "session", "stop"]

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


class SparkEngine:
    """Builds on Spark: always a full build, into a new folder of the warehouse."""

    name = "Spark"
    incremental = False

    def __init__(self, keep_session: bool = False) -> None:
        self.keep_session = keep_session  # for a caller building again soon (tests): Spark starts in seconds
        self._sql: dict[str, str] | None = None

    def prepare(self, manifest: Manifest) -> None:
        self._sql = compiled_sql(manifest)  # before Spark starts: untranslatable SQL fails fast

    @contextlib.contextmanager
    def start(self, manifest: Manifest, plan: Plan) -> Iterator[SparkWork]:
        env = manifest.env
        sql = self._sql if self._sql is not None else compiled_sql(manifest)
        spark = session(env)
        try:
            store = Warehouse(spark, env)
            store.remove_unpublished()
            build_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
            work = SparkWork(manifest, spark.newSession(), store, build_id, sql)  # its own temporary views
            try:
                yield work
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
            finally:
                workdir.remove_temp(work.temp)
            store.remove_unpublished()
        finally:
            if not self.keep_session:
                stop()


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
    if env.master.startswith("local"):
        # Python workers run this interpreter (PySpark reads PYSPARK_PYTHON, else `python3`
        # on PATH, which may be a shim such as pyenv's that fails once the JVM's working
        # folder is removed, or a Python without pyspark's dependencies).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
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


class SparkWork:
    """A build writing Parquet into its own folder of the warehouse, `builds/<build_id>`."""

    def __init__(self, manifest: Manifest, spark: SparkSession, store: Warehouse, build_id: str, sql: dict[str, str]):
        self.manifest, self.spark, self.store, self.sql = manifest, spark, store, sql
        self.build_id, self.folder = build_id, store.build_folder(build_id)
        self.temp = workdir.temp_path(manifest.env.database)  # the readers' DuckDB file, until published
        self.record_fields: dict[str, Any] = {"engine": "spark", "warehouse": store.root, "build": build_id}

    def load_sources(self, sources: Sequence[Source], on_loaded: OnLoaded) -> None:
        export = self.manifest.env.export_folder()
        for source in sources:
            started = time.perf_counter()
            out = f"{self.folder}/{RAW_FOLDER}/{source.table}"
            csv = SparkCsv(
                export / source.file_name,
                source.columns,
                source.timestamp_format,
                source.conditional,
                source.optional,
                source.patterns,
                source.optional_columns,
            )
            rows = load(self.spark, csv, out)
            table(self.spark, out, source.columns).createOrReplaceTempView(view_name(models.RAW_SCHEMA, source.table))
            on_loaded(source, rows, time.perf_counter() - started)

    def run_model(self, model: models.Model) -> int | None:
        from pyspark.errors import PySparkException

        view, out = view_name(self.manifest.env.schema, model.name), f"{self.folder}/{model.name}"
        if model.is_seed:
            rows = load(self.spark, SparkCsv(model.path, model.seed_columns, optional_columns=model.seed_optional), out)
            table(self.spark, out, model.seed_columns).createOrReplaceTempView(view)
            return rows
        try:
            frame = self.spark.sql(self.sql[model.name])
            if model.materialized == "view":
                frame.createOrReplaceTempView(view)
                return None
            frame.write.mode("errorifexists").parquet(out)
            written = self.spark.read.parquet(out)
            written.createOrReplaceTempView(view)
            return int(written.count())
        except PySparkException as e:
            raise ModelError(f"{model.path}: Spark: {first_line(e)}") from None

    def run_tests(self, tests: Sequence[checks.DataTest], input_rows: int | None) -> list[checks.TestResult]:
        from concurrent.futures import ThreadPoolExecutor

        from pyspark.errors import PySparkException

        def run(test: checks.DataTest) -> checks.TestResult:
            started = time.perf_counter()
            try:
                row = self.spark.sql(f"select count(*) from ({self.sql[test.name]}) as failing").collect()
                return checks.TestResult(test, int(row[0][0]), time.perf_counter() - started)
            except PySparkException as e:
                return checks.TestResult(test, 0, time.perf_counter() - started, error=f"Spark: {first_line(e)}")

        # Most tests are small jobs: several at once keep the executors busy. Results in project order.
        with ThreadPoolExecutor(max_workers=TEST_THREADS) as pool:
            return list(pool.map(run, tests))

    def failing_rows(self, failed: list[checks.TestResult], limit: int = 5) -> list[checks.FailingRows]:
        out = []
        for r in failed:
            if r.status == "PASS" or r.error is not None:
                continue
            frame = self.spark.sql(f"select * from ({self.sql[r.test.name]}) as failing limit {int(limit)}")
            rows = tuple(tuple("" if v is None else str(v) for v in row) for row in frame.collect())
            out.append(checks.FailingRows(r.test.name, r.status, r.failures, tuple(frame.columns), rows))
        return out

    def finish(self, write_record: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        _write_database(self.temp, self.manifest, self.folder, write_record)

    def publish(self) -> None:
        self.store.publish(self.build_id)
        database.commit(self.temp, self.manifest.env.database)


def _write_database(
    path: Path, manifest: Manifest, folder: str, write_record: Callable[[duckdb.DuckDBPyConnection], None]
) -> None:
    """The env's DuckDB file for readers: views over the build's Parquet, and build_info.

    Sources and seeds are cast to their declared DuckDB types (ENUM, JSON); staging views
    are the models' own DuckDB SQL over them, as in a DuckDB build.
    """
    import duckdb

    env, folder = manifest.env, local_path(folder)
    con = database.quiet(duckdb.connect(str(path)))
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
        write_record(con)
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
