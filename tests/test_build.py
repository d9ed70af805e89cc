"""All or nothing: a failed build leaves the last good one exactly as it was."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import duckdb
import pytest

from funnel import workdir
from funnel.build import record
from funnel.build.runner import build
from funnel.cli import app
from funnel.engine import database
from funnel.errors import BuildBusy, ModelError, TestFailure
from funnel.project.config import load_config

from .conftest import compiled, read_report


def snapshot(db):
    return db.read_bytes()


def test_a_failing_model_leaves_the_previous_build_unchanged(built, runner):
    db = built / "target" / "dev.duckdb"
    before = snapshot(db)
    (built / "sql" / "intermediate" / "int_deal_stage_history.sql").write_text(
        "select no_such_column from {{ ref('stg_stages') }}"
    )
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "int_deal_stage_history.sql" in result.stderr and "no_such_column" in result.stderr
    assert snapshot(db) == before
    assert not list(db.parent.glob(".*.tmp*"))


def test_a_failing_error_test_leaves_the_previous_build_unchanged(built, runner):
    db = built / "target" / "dev.duckdb"
    before = snapshot(db)
    # Step 1 twice in the mapping: the report gets two rows per month for it.
    seed = built / "sql" / "seeds" / "funnel_steps.csv"
    seed.write_text(seed.read_text() + "1.0,Step 1: Duplicate,1,\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "data test(s) failed" in result.stderr and "the last good build is unchanged" in result.stderr
    assert "unique_rep_sales_funnel_monthly_month__funnel_step" in result.stderr
    assert snapshot(db) == before


def test_a_failing_test_on_the_first_build_leaves_nothing(project):
    (project / "sql" / "tests" / "always_fails.sql").write_text("select 1 as x")
    with pytest.raises(TestFailure, match="always_fails"):
        build(compiled(project))
    assert not (project / "target" / "dev.duckdb").exists()


def test_a_warn_test_does_not_stop_the_build(project):
    (project / "sql" / "tests" / "only_a_warning.sql").write_text("{{ config(severity='warn') }}\nselect 1 as x")
    result = build(compiled(project))
    assert [r.failures for r in result.tests if r.test.name == "only_a_warning"] == [1]
    assert result.count("ERROR") == 0


def test_build_info_is_recorded(built):
    env = load_config(built).environment("dev")
    with database.read(env) as con:
        info = record.read(con)
    assert info is not None and info.env == "dev" and info.tests["ERROR"] == 0
    export = built / "raw_data"
    assert info.source_rows == {f.stem: len(f.read_text().splitlines()) - 1 for f in export.glob("*.csv")}


def test_a_second_build_of_the_same_env_is_refused_clearly(built):
    manifest = compiled(built)
    with workdir.build_lock(manifest.env), pytest.raises(BuildBusy, match=r"another build of env 'dev' is running \(pid \d+\)"):
        build(manifest, full_refresh=True)


def test_stale_temporary_files_are_removed(built, runner):
    stale = built / "target" / ".dev.duckdb.99999.tmp"
    stale.write_bytes(b"left by a killed build")
    (built / "target" / ".dev.duckdb.99999.tmp.wal").write_bytes(b"")
    assert runner.invoke(app, ["build", "--full-refresh"]).exit_code == 0
    assert not list((built / "target").glob(".*.tmp*"))


def test_readers_see_the_last_good_build_while_a_build_holds_its_temp_file(built, runner):
    db = built / "target" / "dev.duckdb"
    before = read_report(db)
    env = load_config(built).environment("dev")
    temp = workdir.temp_path(env.database)
    # A writer holding a temporary file open does not lock the committed file.
    with duckdb.connect(str(temp)) as writer:
        writer.execute("create table t as select 1")
        result = runner.invoke(app, ["show", "-f", "csv"])
        assert result.exit_code == 0
        assert len(result.stdout.splitlines()) == len(before) + 1
    workdir.remove_temp(temp)


def test_a_model_error_names_the_model_file(project):
    (project / "sql" / "reporting" / "rep_extra.sql").write_text("select 1/0 as x, * from {{ ref('nope') }}")
    with pytest.raises(ModelError, match=r"rep_extra.sql line 1: ref\('nope'\)"):
        build(compiled(project))


def test_help_does_not_import_duckdb_jinja_or_plotly():
    code = (
        "import sys; sys.argv=['funnel','--help']\nfrom funnel.cli import app\ntry: app()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('duckdb','jinja2','plotly','httpx') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "100"}
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_broken_test_query_is_named_and_the_others_still_run(project):
    (project / "sql" / "tests" / "broken_query.sql").write_text("select no_such_column from {{ ref('stg_stages') }}")
    with pytest.raises(TestFailure, match=r"broken_query \(.*broken_query.sql: .*no_such_column"):
        build(compiled(project))


def test_tests_of_a_small_build_run_as_one_query_with_the_same_results(built):
    from funnel.project import checks
    from funnel.quoting import relation

    manifest = compiled(built)
    # A test that fails on purpose, so the comparison covers failure counts too.
    every_stage = f"select * from {relation(manifest.env.schema, 'stg_stages')}"
    failing = checks.DataTest("every_stage", "stg_stages", "warn", every_stage, built)
    tests = [*manifest.tests, failing]
    with database.read(manifest.env) as con:
        one_by_one = checks.run(con, tests)
        batched = checks.run(con, tests, input_rows=checks.BATCH_BELOW_ROWS - 1)
        large = checks.run(con, tests, input_rows=checks.BATCH_BELOW_ROWS)
    assert [(r.test.name, r.failures, r.status) for r in batched] == [(r.test.name, r.failures, r.status) for r in one_by_one]
    assert [(r.test.name, r.failures) for r in large] == [(r.test.name, r.failures) for r in one_by_one]
    assert len({r.seconds for r in batched}) == 1 < len({r.seconds for r in large})  # one query, shared time
    assert batched[-1].failures > 0


def test_a_sql_test_may_end_in_a_comment(project, runner):
    # Run as one query, the comment must not swallow the next test (it crashed with a KeyError).
    tests = project / "sql" / "tests"
    (tests / "zz_every_stage.sql").write_text("{{ config(severity='warn') }}\nselect * from {{ ref('stg_stages') }} -- all fail")
    (tests / "zz_no_stage.sql").write_text("select * from {{ ref('stg_stages') }}\nwhere stage_id is null")
    stages = len((project / "raw_data" / "stages.csv").read_text().splitlines()) - 1
    result = build(compiled(project))
    by_name = {r.test.name: (r.status, r.failures) for r in result.tests}
    assert by_name["zz_every_stage"] == ("WARN", stages)
    assert by_name["zz_no_stage"] == ("PASS", 0)
    tested = runner.invoke(app, ["test", "--select", "stg_stages"])
    assert tested.exit_code == 0, tested.output
    assert f"zz_every_stage: {stages} rows" in tested.stderr


def test_threads_and_memory_limit_from_the_environment_reach_duckdb(tmp_path):
    from funnel.project.config import Environment

    env = Environment("dev", tmp_path / "d.duckdb", "s", tmp_path, threads=1, memory_limit="256MB")
    with database.connect(tmp_path / "t.duckdb", env) as con:
        threads, memory = con.execute("select current_setting('threads'), current_setting('memory_limit')").fetchone()
        spill = con.execute("select current_setting('temp_directory')").fetchone()[0]
    assert threads == 1
    assert memory == "244.1 MiB"  # 256 MB, as DuckDB prints it
    assert spill.endswith("t.duckdb.spill")


def test_a_build_without_a_memory_limit_stays_within_funnels_default(tmp_path):
    # DuckDB alone would take 80 % of the machine's memory (3.7 GB for a 5M-deal build here).
    from funnel.project.config import Environment

    if database.default_memory_limit() is None:
        pytest.skip("this machine has less than 1.9 GB of memory: DuckDB's own default is smaller")
    env = Environment("dev", tmp_path / "d.duckdb", "s", tmp_path)
    with database.connect(tmp_path / "t.duckdb", env) as con:
        (memory,) = con.execute("select current_setting('memory_limit')").fetchone()
    assert memory == "1.3 GiB"  # 1500 MB, as DuckDB prints it


def test_a_duckdb_failure_outside_the_models_is_one_clear_error(project, runner):
    # A memory limit too small for even loading the sources: DuckDB fails, funnel explains.
    config = project / "environments.toml"
    config.write_text(config.read_text().replace('raw_data = "raw_data"\n', 'raw_data = "raw_data"\nmemory_limit = "1MB"\n', 1))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ")
    assert "DuckDB failed while building env 'dev' (Out of Memory Error" in line
    assert line.endswith("the last good build is unchanged. Check free disk space there and memory_limit, then rebuild.")
    assert not list((project / "target").glob(".*.tmp*"))


def test_each_kind_of_declared_test_counts_the_rows_that_break_it(project, runner):
    """Hand-made models with known faults; each count below is read off the rows."""
    marts = project / "sql" / "marts"
    marts.mkdir()
    # id 2 twice, a null id, a null name, 'z' not accepted, parent 9 missing, parent null.
    (marts / "mart_child.sql").write_text(
        "select * from (values (1, 'a', 10), (2, 'b', 10), (2, 'b', 9), (null, null, 9), (4, 'z', null))"
        " as t(id, name, parent_id)"
    )
    # A null parent key must not match a null child key.
    (marts / "mart_parent.sql").write_text("select * from (values (10), (null)) as t(parent_id)")
    (marts / "tests.toml").write_text(
        "\n".join(
            f'[[test]]\nname = "{name}"\nmodel = "mart_child"\nseverity = "warn"\n{body}\n'
            for name, body in [
                ("ids_not_null", 'type = "not_null"\ncolumns = ["id"]'),
                ("ids_unique", 'type = "unique"\ncolumns = ["id"]'),
                ("id_name_unique", 'type = "unique"\ncolumns = ["id", "name"]'),
                ("names_accepted", 'type = "accepted_values"\ncolumns = ["name"]\nvalues = ["a", "b"]'),
                ("parents_exist", 'type = "relationships"\ncolumns = ["parent_id"]\nto = "mart_parent"'),
                ("ids_small", 'type = "expression"\nexpression = "id < 3"'),
            ]
        )
    )
    result = runner.invoke(app, ["build", "--select", "mart_child", "--select", "mart_parent"])
    assert result.exit_code == 0, result.output
    warned = dict(re.findall(r"WARN  test   (\w+): (\d+) rows?", result.stderr))
    expected = {
        "ids_not_null": "1",  # (null, null, 9)
        "ids_unique": "1",  # the group id = 2
        "id_name_unique": "1",  # the group (2, 'b')
        "names_accepted": "1",  # 'z'; a null name is not_null's business
        "parents_exist": "2",  # the two rows with parent 9; a null parent_id is not checked
        "ids_small": "2",  # id 4, and the null id (not known to be < 3)
    }
    assert {name: warned.get(name) for name in expected} == expected
