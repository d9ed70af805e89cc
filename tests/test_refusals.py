"""What funnel refuses to do, before anything is written: replace a file that is not its
own build, publish two relations under one case-insensitive name. And how it says so: one
`Error:` line naming the file or key and the next step, the right exit code."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from funnel.cli import app

from .conftest import read_report


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def one_error(result, code: int = 1) -> str:
    """The one `Error:` line of a failed command (the last line of stderr), after checking the exit code."""
    assert result.exit_code == code, result.output
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.output
    return errors[0]


def use_database(project: Path, path: str, env: str = "dev") -> None:
    """environments.toml with `env`'s database at `path` (relative to the project)."""
    old = f'database = "target/{env}.duckdb"'
    text = (project / "environments.toml").read_text()
    assert old in text
    (project / "environments.toml").write_text(text.replace(old, f'database = "{path}"'))


# 1. A build replaces only its own database.


@pytest.mark.parametrize("path", ["raw_data/deal_changes.csv", "raw_data/dev.duckdb"])
def test_a_database_inside_the_export_folder_is_refused(project, runner, path):
    use_database(project, path)
    before = {p.name: p.read_bytes() for p in (project / "raw_data").iterdir()}
    result = runner.invoke(app, ["build"])
    line = one_error(result)
    assert "environments.toml: [dev] database" in line and "is inside the export folder" in line
    assert "target/dev.duckdb" in line  # what to write instead
    assert {p.name: p.read_bytes() for p in (project / "raw_data").iterdir()} == before  # nothing added, nothing replaced


def test_a_database_that_is_the_users_file_is_refused_and_left_as_it_is(project, runner):
    notes = project / "notes.txt"
    notes.write_text("call Ana on Monday\n")
    use_database(project, "notes.txt")
    mtime = notes.stat().st_mtime_ns
    result = runner.invoke(app, ["build"])
    line = one_error(result)
    assert "[dev] database" in line and "notes.txt is not a DuckDB file" in line and "target/dev.duckdb" in line
    assert notes.read_text() == "call Ana on Monday\n" and notes.stat().st_mtime_ns == mtime
    assert not list(project.glob(".notes.txt*")), "a temporary build file or lock was written beside it"


def test_a_duckdb_database_funnel_did_not_build_is_refused(project, runner):
    mine = project / "mine.duckdb"
    with duckdb.connect(str(mine)) as con:
        con.execute("create table invoices as select 42 as amount")
    use_database(project, "mine.duckdb")
    result = runner.invoke(app, ["build"])
    line = one_error(result)
    assert "[dev] database" in line and "a DuckDB database funnel did not build" in line
    with duckdb.connect(str(mine), read_only=True) as con:
        assert con.execute("select amount from invoices").fetchall() == [(42,)]
        assert con.execute("select count(*) from information_schema.tables").fetchone() == (1,)


def test_dry_run_and_status_say_the_same(project, runner):
    (project / "notes.txt").write_text("x")
    use_database(project, "notes.txt")
    line = one_error(runner.invoke(app, ["build", "--dry-run"]))
    assert "notes.txt is not a DuckDB file" in line
    status = runner.invoke(app, ["status", "-f", "json"])
    assert status.exit_code == 0 and "notes.txt is not a DuckDB file" in status.stdout


def test_a_spark_env_refuses_before_spark_starts(project, runner):
    (project / "notes.txt").write_text("x")
    with (project / "environments.toml").open("a") as f:
        f.write('\n[spark]\ndatabase = "notes.txt"\nschema = "s"\nraw_data = "raw_data"\nengine = "spark"\nwarehouse = "wh"\n')
    line = one_error(runner.invoke(app, ["build", "--env", "spark"]))
    assert "[spark] database" in line and "is not a DuckDB file" in line
    assert (project / "notes.txt").read_text() == "x" and not (project / "wh").exists()


def test_a_warehouse_inside_the_export_folder_is_refused(project, runner):
    with (project / "environments.toml").open("a") as f:
        f.write('\n[spark]\ndatabase = "target/s.duckdb"\nschema = "s"\nraw_data = "raw_data"\n')
        f.write('engine = "spark"\nwarehouse = "raw_data/wh"\n')
    line = one_error(runner.invoke(app, ["build", "--env", "spark"]))
    assert "[spark] warehouse" in line and "inside the export folder" in line
    assert not (project / "raw_data" / "wh").exists()


def test_the_last_build_is_still_replaced(built, runner):
    # funnel's own database is what a build replaces: a changed export is rebuilt as always.
    deals = built / "raw_data" / "deal_changes.csv"
    deals.write_text(deals.read_text() + deals.read_text().splitlines()[-1] + "\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output


# 2. Names that differ only in case are one relation: refused before anything runs.

CASE_PAIRS = {
    "two layers": ("sql/intermediate/REP_X.sql", "sql/reporting/rep_x.sql"),
    "one folder": ("sql/reporting/Rep_X.sql", "sql/reporting/rep_x.sql"),
    "a seed": ("sql/seeds/funnel_steps.csv", "sql/intermediate/FUNNEL_STEPS.sql"),
}


@pytest.mark.parametrize("pair", sorted(CASE_PAIRS))
def test_two_models_whose_names_differ_only_in_case_are_refused(project, runner, pair):
    first, second = CASE_PAIRS[pair]
    for path in (first, second):
        if path.endswith(".sql"):
            (project / path).write_text("select 1 as a\n")
    line = one_error(runner.invoke(app, ["build"]))
    # each file named, and the way out
    assert first.split("/")[-1] in line and second.split("/")[-1] in line and "ignore case; rename one" in line
    assert not (project / "target").exists()  # refused before anything ran
    assert one_error(runner.invoke(app, ["compile"])) == line


@pytest.mark.parametrize("schema", ["pipedrive", "Pipedrive"])
@pytest.mark.parametrize("declared", [True, False], ids=["sources.toml", "built-in sources"])
def test_a_model_that_would_replace_a_source_table_is_refused(project, runner, schema, declared):
    (project / "environments.toml").write_text(
        (project / "environments.toml").read_text().replace('"public_pipedrive_analytics"', f'"{schema}"')
    )
    (project / "sql" / "staging" / "Users.sql").write_text("select 1 as id\n")
    if not declared:
        (project / "sql" / "sources.toml").unlink()
    line = one_error(runner.invoke(app, ["build"]))
    assert "Users.sql: model 'Users' would replace the source table pipedrive.users" in line
    assert ("sql/sources.toml" if declared else "users.csv of the export") in line
    assert "rename the model or give the env another schema in environments.toml" in line
    assert not (project / "target").exists()


def test_a_model_named_like_a_source_table_in_another_schema_builds(project, runner):
    (project / "sql" / "staging" / "users.sql").write_text("select * from {{ source('pipedrive', 'users') }}\n")
    assert runner.invoke(app, ["build"]).exit_code == 0


def test_a_ref_in_another_case_names_no_model_and_suggests_the_one_meant(project, runner):
    (project / "sql" / "reporting" / "rep_x.sql").write_text("select 1 as a\n")
    (project / "sql" / "reporting" / "rep_y.sql").write_text("select * from {{ ref('REP_X') }}\n")
    line = one_error(runner.invoke(app, ["build"]))
    assert line.endswith("rep_y.sql line 1: ref('REP_X') names no model. Did you mean 'rep_x'?")


# 14. A damaged database is reported as damaged, with the way out.

GARBAGE = {
    "truncated": lambda data: data[:5000],  # DuckDB's header survives
    "garbage": lambda data: b"\x00garbage" * 1000,
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("damage", sorted(GARBAGE))
def test_a_damaged_database_is_reported_as_damaged(built, runner, damage):
    db = built / "target" / "dev.duckdb"
    db.write_bytes(GARBAGE[damage](db.read_bytes()))
    has_header = damage == "truncated"
    for command in (["show"], ["test"], ["export", "-f", "csv", "--out", "out"], ["build"]):
        line = one_error(runner.invoke(app, command))
        assert str(db) in line and "close other programs" not in line, command
        if has_header:
            assert "is damaged" in line and "funnel clean --env dev, then run funnel build --env dev" in line, command
        elif command == ["build"]:
            assert "is not a DuckDB file" in line and "if it is a damaged build, delete it" in line, command
        else:
            assert "not a DuckDB database" in line and "if it is a damaged build, delete it" in line, command
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0
    assert ("is damaged" if has_header else "not a DuckDB database") in status.stdout
    if has_header:  # the way out the message names works
        assert runner.invoke(app, ["clean", "--env", "dev"]).exit_code == 0
        assert runner.invoke(app, ["build"]).exit_code == 0
        assert read_report(db)
