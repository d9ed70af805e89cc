"""The Spark engine: the same project built on Spark equals the DuckDB build, row for row and
type for type; bad input and failing tests leave the published build alone; every reader
works on a Spark build.

The builds run on `local[2]` with a small session; one session serves the whole module
(starting one costs ~20 s here). Skipped only where pyspark or Java cannot be had.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from funnel import names
from funnel.cli import app
from funnel.errors import ConfigError, ModelError, SourceError, TestFailure
from funnel.project.config import load_config
from funnel.project.manifest import compile

from .conftest import DATA, SHARED_RAW, needs_shared_raw, sampled
from .test_cli import error_line

SPARK_ENV = """
[spark]
database = "target/spark.duckdb"
schema = "public_pipedrive_analytics"
raw_data = "raw_data"
engine = "spark"
master = "local[2]"
warehouse = "target/warehouse"

[spark.spark]
"spark.sql.shuffle.partitions" = 4
"spark.driver.memory" = "1g"
"spark.ui.enabled" = false
"""
BAD_CSV = DATA / "bad_csv"
CASES = tomllib.loads((BAD_CSV / "cases.toml").read_text())

has_spark = importlib.util.find_spec("pyspark") is not None and importlib.util.find_spec("sqlglot") is not None
has_java = shutil.which("java") is not None
needs_spark = pytest.mark.skipif(
    not (has_spark and has_java),
    reason="needs pyspark and sqlglot (pip install 'pipedrive-funnel[spark]') and a Java 17+ runtime (`java` on PATH)",
)


# One worker runs every Spark test (pytest-xdist, --dist loadgroup): one JVM, not one per core.
pytestmark = pytest.mark.xdist_group("spark")


@pytest.fixture(scope="module", autouse=True)
def _one_spark_session():
    yield
    if has_spark:
        from funnel.engine.spark import engine as spark

        spark.stop()


@pytest.fixture
def spark_project(project: Path) -> Path:
    with (project / "environments.toml").open("a") as f:
        f.write(SPARK_ENV)
    return project


def manifest_of(root: Path, env: str, raw_data: Path | None = None):
    config = load_config(root)
    return compile(config, config.environment(env, raw_data))


def spark_build(manifest):
    """A Spark build through the one runner, keeping the session for the next test (Spark starts in seconds)."""
    from funnel.build.runner import build
    from funnel.engine.spark.engine import SparkEngine

    return build(manifest, engine=SparkEngine(keep_session=True))


def build_both(root: Path, raw_data: Path | None = None):
    """Build dev (DuckDB) and spark from the same export; return the spark result."""
    from funnel.build import runner as build

    build.build(manifest_of(root, "dev", raw_data))
    return spark_build(manifest_of(root, "spark", raw_data))


def assert_same_builds(root: Path, raw_data: Path | None = None) -> None:
    from funnel.outputs.parity import compare_builds

    manifest = manifest_of(root, "spark", raw_data)
    results = compare_builds(manifest, manifest.config.environment("dev"))
    assert [r.table for r in results] == list(manifest.graph.order)
    different = [(r.table, r.missing, r.unexpected, r.examples) for r in results if not r.ok]
    assert different == []
    # Column types too: funnel's own models cast their sums, so both engines give the same.
    # A model of the user's may leave one uncast (DuckDB's sum of BIGINT is a HUGEINT,
    # Spark's a BIGINT): compared by value, and only such widenings are let through.
    known = {value for name, value in vars(names).items() if name.isupper() and isinstance(value, str)}
    assert [(r.table, r.widened) for r in results if r.widened and r.table in known] == []
    for r in results:
        for column in r.widened:
            spark_type, duckdb_type = column.split(" ", 1)[1].split(" vs ")
            assert (spark_type, duckdb_type) == ("BIGINT", "HUGEINT") or duckdb_type.startswith("DECIMAL(38,"), (r.table, column)


# -- slow: builds on Spark ---------------------------------------------------------------


@pytest.mark.slow
@needs_spark
def test_spark_build_of_the_sample_equals_the_duckdb_build(spark_project, runner):
    import duckdb

    result = build_both(spark_project)
    assert result.count("ERROR") == 0
    assert_same_builds(spark_project)  # rows and column types of every model
    with duckdb.connect(str(spark_project / "target" / "spark.duckdb"), read_only=True) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns where table_name = 'rep_sales_funnel_monthly'"
            ).fetchall()
        )
    assert types == {"month": "DATE", "kpi_name": "VARCHAR", "funnel_step": "DECIMAL(3,1)", "deals_count": "BIGINT"}
    cli = runner.invoke(app, ["parity", "--env", "spark", "--against", "dev"])
    assert cli.exit_code == 0, cli.output
    assert "DIFFERENT" not in cli.stdout and "rep_sales_funnel_monthly: OK" in cli.stdout


@pytest.mark.slow
@needs_spark
def test_spark_build_of_a_generated_export_equals_the_duckdb_build(spark_project, tmp_path):
    from funnel.pipedrive.sample import generate

    export = tmp_path / "export"
    generate(export, deals=2000, seed=11)
    build_both(spark_project, export)
    assert_same_builds(spark_project, export)


@pytest.mark.slow
@needs_spark
@needs_shared_raw
def test_spark_build_of_the_reference_export_equals_the_duckdb_build(spark_project):
    build_both(spark_project, SHARED_RAW)
    assert_same_builds(spark_project, SHARED_RAW)


@pytest.mark.slow
@needs_spark
def test_readers_work_on_a_spark_build(spark_project, runner, tmp_path):
    build_both(spark_project)
    for args in (["show", "-f", "csv"], ["show", "--model", "rep_stage_velocity", "-f", "csv"], ["show", "--summary"]):
        duck, spark = runner.invoke(app, args), runner.invoke(app, [*args, "--env", "spark"])
        assert spark.exit_code == 0, spark.output
        # Titles name the env (and are centred: their padding differs with the name's length).
        assert spark.stdout.split() == duck.stdout.replace("· dev", "· spark").split()
    tested = runner.invoke(app, ["test", "--env", "spark"])
    assert tested.exit_code == 0, tested.output
    assert "ERROR=0" in tested.stderr
    for fmt in ("csv", "parquet"):
        runner.invoke(app, ["export", "-f", fmt, "--out", str(tmp_path / f"dev-{fmt}")])
        exported = runner.invoke(app, ["export", "--env", "spark", "-f", fmt, "--out", str(tmp_path / f"spark-{fmt}")])
        assert exported.exit_code == 0, exported.output
        names = sorted(p.name for p in (tmp_path / f"dev-{fmt}").iterdir())
        assert sorted(p.name for p in (tmp_path / f"spark-{fmt}").iterdir()) == names
    for name in sorted(p.name for p in (tmp_path / "dev-csv").iterdir()):
        ours = sorted((tmp_path / "spark-csv" / name).read_text().splitlines())
        assert ours == sorted((tmp_path / "dev-csv" / name).read_text().splitlines()), name


def _bad_export(project: Path, case: str) -> Path:
    export = project / "bad_export"
    shutil.copytree(project / "raw_data", export)
    target = export / CASES[case]["replaces"]
    if case == "missing_file":
        target.unlink()
    else:
        shutil.copyfile(BAD_CSV / f"{case}.csv", target)
    return export


@pytest.fixture
def published(spark_project):
    """A Spark build of the sample, published; returns (manifest, CURRENT, database bytes)."""

    manifest = manifest_of(spark_project, "spark")
    spark_build(manifest)
    current = spark_project / "target" / "warehouse" / "spark" / "CURRENT"
    return current.read_text(), (spark_project / "target" / "spark.duckdb").read_bytes()


ERROR_CASES = sorted(c for c, spec in CASES.items() if spec["outcome"] == "error")


@pytest.mark.slow
@needs_spark
@pytest.mark.parametrize("case", ERROR_CASES, ids=str)
def test_bad_input_stops_a_spark_build_with_the_duckdb_loaders_words(spark_project, case):

    export = _bad_export(spark_project, case)
    with pytest.raises((SourceError, TestFailure)) as failure:
        spark_build(manifest_of(spark_project, "spark", export))
    message = str(failure.value)
    assert CASES[case]["words"] in message
    assert len(message.splitlines()) == 1
    builds = spark_project / "target" / "warehouse" / "spark" / "builds"
    assert not builds.exists() or not list(builds.iterdir()), "a failed build left its folder"
    assert not (spark_project / "target" / "spark.duckdb").exists()


@pytest.mark.slow
@needs_spark
def test_a_strict_value_failure_names_file_line_column_and_value(spark_project, runner, published):
    export = _bad_export(spark_project, "done_not_true_false")
    result = runner.invoke(app, ["build", "--env", "spark", "--raw-data", str(export)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {export / 'activity.csv'} line 3, column done: 'yes' is not one of True, False; fix or remove the row."
    )
    assert "Traceback" not in result.output


@pytest.mark.slow
@needs_spark
def test_a_failing_error_test_leaves_the_previous_spark_build_published(spark_project, published):
    from funnel.outputs import query as report

    current_before, _ = published
    env = load_config(spark_project).environment("spark")
    before = report.show(env).rows
    (spark_project / "sql" / "tests" / "no_stage_nine.sql").write_text(
        "select * from {{ ref('stg_stages') }} where stage_id = 9"  # an error test that fails
    )
    with pytest.raises(TestFailure, match="no_stage_nine"):
        spark_build(manifest_of(spark_project, "spark"))
    assert (spark_project / "target" / "warehouse" / "spark" / "CURRENT").read_text() == current_before
    assert report.show(env).rows == before
    # The one runner keeps the rows that stopped it, as for DuckDB: funnel test --failures shows them.
    from funnel import workdir

    kept = workdir.load_failures(env)
    assert kept is not None and [(t["test"], t["status"]) for t in kept["tests"]] == [("no_stage_nine", "ERROR")]
    assert kept["tests"][0]["rows"] and all(row[0] == "9" for row in kept["tests"][0]["rows"])


@pytest.mark.slow
@needs_spark
def test_old_spark_builds_go_and_the_previous_one_stays(spark_project, published):

    current_before, _ = published
    manifest = manifest_of(spark_project, "spark")
    spark_build(manifest)
    spark_build(manifest)
    warehouse = spark_project / "target" / "warehouse" / "spark"
    current, previous = (warehouse / "CURRENT").read_text().strip(), (warehouse / "PREVIOUS").read_text().strip()
    assert sorted(p.name for p in (warehouse / "builds").iterdir()) == sorted([current, previous])
    assert current_before.strip() not in (current, previous)


# -- fast: translation, configuration, imports ---------------------------------------------


@needs_spark
def test_compiled_spark_sql_covers_every_model_and_test(spark_project):
    from funnel.engine.spark.engine import compiled_sql

    manifest = manifest_of(spark_project, "spark")
    sql = compiled_sql(manifest)
    models = [n for n in manifest.graph.order if not manifest.graph.models[n].is_seed]
    assert set(sql) == set(models) | {t.name for t in manifest.tests}
    for name in ("rep_owner_funnel_monthly", "rep_lost_reasons_monthly"):
        assert "infinity" not in sql[name]  # Spark has no infinite timestamps
    assert "`public_pipedrive_analytics__stg_deal_changes`" in sql["int_stage_entries"]
    assert "`public_pipedrive_analytics__int_stage_entries`" in sql["int_deal_stage_history"]


@needs_spark
@pytest.mark.parametrize(
    ("select", "construct"),
    [
        ("select regexp_full_match('a', 'a') as r", "regexp_full_match()"),
        ("select epoch(now()) as e", "epoch(NOW())"),
        ("select '-infinity'::date as d", "'-infinity'"),
    ],
    ids=["duckdb-function", "epoch-of-a-timestamp", "infinite-date"],
)
def test_untranslatable_sql_names_the_model_file_and_the_construct(spark_project, select, construct):
    from funnel.engine.spark.engine import compiled_sql

    path = spark_project / "sql" / "reporting" / "rep_duckdb_only.sql"
    path.write_text(select + "\n")
    with pytest.raises(ModelError) as failure:
        compiled_sql(manifest_of(spark_project, "spark"))
    assert str(failure.value).startswith(f"{path}: ")
    assert construct in str(failure.value)


def _env_file(project: Path, body: str) -> None:
    (project / "environments.toml").write_text(body)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('engine = "spork"', "engine 'spork' is not one of duckdb, spark. Did you mean 'spark'?"),
        ('master = "local[2]"', 'master is a Spark setting; add engine = "spark" or remove master.'),
        ('engine = "spark"', 'engine "spark" needs warehouse = "folder or URI"'),
        ('engine = "spark"\nwarehouse = 3', "key 'warehouse' must be a string, not 3."),
        ('engine = "spark"\nwarehouse = "w"\nspark = 1', "key 'spark' must be a table, not 1."),
        ('engine = "spark"\nwarehouse = "w"\n[s.spark]\n"a.b" = [1]', "'a.b' must be a Spark setting"),
    ],
    ids=["unknown-engine", "spark-key-without-engine", "no-warehouse", "warehouse-not-text", "spark-not-table", "list-value"],
)
def test_engine_keys_are_checked(project, body, words):
    _env_file(project, f'[s]\ndatabase = "target/s.duckdb"\nschema = "s"\nraw_data = "raw_data"\n{body}\n')
    with pytest.raises(ConfigError) as failure:
        load_config(project)
    assert words in str(failure.value)


def test_a_spark_env_resolves_its_warehouse_and_settings(project):
    _env_file(
        project,
        '[s]\ndatabase = "target/s.duckdb"\nschema = "s"\nengine = "spark"\nwarehouse = "../lake"\n'
        '[s.spark]\n"spark.executor.memory" = "2g"\n"spark.sql.adaptive.enabled" = true\n'
        '[t]\ndatabase = "target/t.duckdb"\nschema = "t"\nengine = "spark"\nwarehouse = "s3a://bucket/funnel"\n',
    )
    config = load_config(project)
    s, t = config.environments["s"], config.environments["t"]
    assert (s.engine, s.master, s.warehouse) == ("spark", "local[*]", str((project.parent / "lake").resolve()))
    assert s.spark == {"spark.executor.memory": "2g", "spark.sql.adaptive.enabled": "true"}
    assert t.warehouse == "s3a://bucket/funnel"


def test_a_setting_the_numbers_depend_on_cannot_be_changed(spark_project):
    from funnel.engine.spark import engine as spark

    with (spark_project / "environments.toml").open("a") as f:
        f.write('"spark.sql.session.timeZone" = "Europe/Berlin"\n')
    with pytest.raises(ConfigError, match="spark.sql.session.timeZone must stay 'UTC'"):
        spark.session(load_config(spark_project).environment("spark"))


def test_parity_against_an_env_without_a_build_says_so(built, runner):
    with (built / "environments.toml").open("a") as f:
        f.write(SPARK_ENV)
    result = runner.invoke(app, ["parity", "--against", "spark"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: no build of env 'spark'")


def test_help_and_duckdb_commands_do_not_import_spark(built):
    code = (
        "import sys, runpy\n"
        "sys.argv = ['funnel', '--help']\n"
        "from funnel.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "sys.argv = ['funnel', 'show', '-f', 'csv']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'sqlglot', 'py4j')), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=built)
    assert result.stderr.strip().splitlines()[-1] == "[]"
    assert "month,kpi_name" in result.stdout


def test_a_spark_env_without_pyspark_says_how_to_install_it(spark_project, monkeypatch):
    from funnel.engine.spark import engine as spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    monkeypatch.setattr(spark, "_sessions", {})  # a session an earlier test kept would answer first
    with pytest.raises(ConfigError, match=r"pip install 'pipedrive-funnel\[spark\]'"):
        spark.session(load_config(spark_project).environment("spark"))


@pytest.mark.parametrize(
    ("relative", "outcome"), sampled([(1e-15, 0), (1e-9, 1)], {"last-bits"}, ["last-bits", "a-real-difference"])
)
def test_parity_of_two_builds_forgives_only_the_last_bits_of_doubles(built, runner, relative, outcome):
    import duckdb

    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    with duckdb.connect(str(built / "target" / "prod.duckdb")) as con:
        con.execute(
            f"update prod_pipedrive_analytics.rep_stage_velocity set avg_days = avg_days * (1 + {relative}) where funnel_step = 1"
        )
    result = runner.invoke(app, ["parity", "--env", "prod", "--against", "dev", "--select", "rep_stage_velocity"])
    assert result.exit_code == outcome, result.output
    if outcome:
        assert "rep_stage_velocity: DIFFERENT matching=8 missing=1 unexpected=1" in result.stdout
    else:
        assert "1 row(s) of rep_stage_velocity equal to 12 significant digits in DOUBLE columns only" in result.stdout


def test_parity_of_two_builds_finds_a_changed_row(built, runner):
    import duckdb

    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    with duckdb.connect(str(built / "target" / "prod.duckdb")) as con:
        con.execute(
            "update prod_pipedrive_analytics.rep_sales_funnel_monthly set deals_count = deals_count + 1 where funnel_step = 2.1"
        )
    result = runner.invoke(app, ["parity", "--env", "prod", "--against", "dev"])
    assert result.exit_code == 1
    assert "rep_sales_funnel_monthly: DIFFERENT" in result.stdout
    assert "rep_deal_cohorts: OK" in result.stdout


def test_parity_of_two_builds_compares_a_wider_integer_or_decimal_by_value(built, runner):
    # DuckDB's sum() of a BIGINT is a HUGEINT, Spark's a BIGINT: a model of the user's that
    # leaves its sum uncast was built right by both, yet parity stopped at "different columns".
    import duckdb

    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    table = "prod_pipedrive_analytics.rep_sales_funnel_monthly"
    args = ["parity", "--env", "prod", "--against", "dev", "--select", "rep_sales_funnel_monthly"]
    with duckdb.connect(str(built / "target" / "prod.duckdb")) as con:
        con.execute(f"alter table {table} alter deals_count type hugeint")
        con.execute(f"alter table {table} alter funnel_step type decimal(18, 1)")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rep_sales_funnel_monthly: OK" in result.stdout
    assert "funnel_step DECIMAL(18,1) vs DECIMAL(3,1); deals_count HUGEINT vs BIGINT (the same kind" in result.stdout
    with duckdb.connect(str(built / "target" / "prod.duckdb")) as con:  # a value past BIGINT is a difference
        con.execute(f"update {table} set deals_count = deals_count + 18446744073709551616 where funnel_step = 1")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "rep_sales_funnel_monthly: DIFFERENT" in result.stdout
    for other in ("decimal(18, 2)", "varchar"):  # another scale, another kind: not comparable
        with duckdb.connect(str(built / "target" / "prod.duckdb")) as con:
            con.execute(f"alter table {table} alter funnel_step type {other}")
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert "built different columns (funnel_step " in error_line(result)


def test_parity_of_two_builds_tells_empty_text_from_null(built, runner):
    import duckdb

    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    reason_rows = "where lost_reason_id = (select min(lost_reason_id) from {0}.rep_lost_reasons_monthly)"
    for env, schema, value in (("dev", "public_pipedrive_analytics", "null"), ("prod", "prod_pipedrive_analytics", "''")):
        with duckdb.connect(str(built / "target" / f"{env}.duckdb")) as con:
            con.execute(f"update {schema}.rep_lost_reasons_monthly set lost_reason = {value} {reason_rows.format(schema)}")
    args = ["parity", "--env", "prod", "--against", "dev", "--select", "rep_lost_reasons_monthly"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "rep_lost_reasons_monthly: DIFFERENT" in result.stdout
    assert "unexpected=0" not in result.stdout and "NULL" in result.stdout and "''" in result.stdout
    with duckdb.connect(str(built / "target" / "dev.duckdb")) as con:
        schema = "public_pipedrive_analytics"
        con.execute(f"update {schema}.rep_lost_reasons_monthly set lost_reason = '' where lost_reason is null")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def _postgres_dsn() -> str | None:
    try:
        import psycopg

        dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
        with psycopg.connect(dsn):
            return dsn
    except Exception:  # no server: the test skips
        return None


@pytest.mark.slow
@pytest.mark.postgres
@needs_spark
def test_export_to_postgresql_and_parity_work_on_a_spark_build(project, runner):
    import secrets

    import psycopg

    dsn = _postgres_dsn()
    if dsn is None:
        pytest.skip("no PostgreSQL server answers at 127.0.0.1:5432 as postgres")
    schema = f"funnel_spark_test_{secrets.token_hex(4)}"
    with (project / "environments.toml").open("a") as f:
        f.write(SPARK_ENV.replace('"public_pipedrive_analytics"', f'"{schema}"'))
    try:
        spark_build(manifest_of(project, "spark"))
        exported = runner.invoke(app, ["export", "--env", "spark", "--dsn", dsn])
        assert exported.exit_code == 0, exported.output
        compared = runner.invoke(app, ["parity", "--env", "spark", "--dsn", dsn])
        assert compared.exit_code == 0, compared.output
        assert "rep_sales_funnel_monthly: OK" in compared.stdout
    finally:
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute(f'drop schema if exists "{schema}" cascade')


@pytest.mark.slow
@needs_spark
@pytest.mark.parametrize("case", ["header_only", "quoted_commas_newlines"], ids=str)
def test_legal_odd_input_builds_on_spark_as_on_duckdb(spark_project, case):
    from funnel.build import runner as build

    export = _bad_export(spark_project, case)
    build.build(manifest_of(spark_project, "dev", export))
    result = spark_build(manifest_of(spark_project, "spark", export))
    if CASES[case]["outcome"] == "warn":
        assert CASES[case]["words"] in {r.test.name for r in result.tests if r.status == "WARN"}
    assert_same_builds(spark_project, export)


@pytest.mark.slow
@needs_spark
def test_a_spark_build_records_its_vars(spark_project, runner, tmp_path):
    # It recorded none: show's title, the PostgreSQL comment and _funnel_definitions.csv
    # claimed the default definitions while the build counted every entry into a stage.
    import duckdb

    cli = runner.invoke(app, ["build", "--env", "spark", "--var", "stage_entry=every"])
    assert cli.exit_code == 0, cli.output
    shown = runner.invoke(app, ["show", "--env", "spark", "--format", "csv"])
    assert shown.exit_code == 0, shown.output
    assert "built with definitions: stage_entry=every" in shown.stderr
    exported = runner.invoke(app, ["export", "--env", "spark", "--format", "csv", "--out", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    assert "stage_entry" in (tmp_path / "out" / "_funnel_definitions.csv").read_text()

    from funnel.build import record

    with duckdb.connect(str(spark_project / "target" / "spark.duckdb"), read_only=True) as con:
        found = record.read(con)
    assert found is not None and found.engine == "spark" and found.vars["stage_entry"] == "every"
