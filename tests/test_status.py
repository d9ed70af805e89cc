"""`funnel status`: what it says about an environment, and that nothing missing makes it fail."""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from funnel.cli import app

from .conftest import ENVIRONMENTS, compiled, read_report
from .test_cli import error_line
from .test_plan import same_length_edit

PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSSLMODE", "PGPASSWORD", "PGSERVICE")


@pytest.fixture(autouse=True)
def no_pg_variables(monkeypatch):
    for name in PG_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def status_json(runner, *args: str) -> dict:
    result = runner.invoke(app, ["status", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_before_any_build(project, runner):
    data = status_json(runner)
    assert data["project"] == str(project) and data["config_path"] == str(project / "environments.toml")
    assert data["env"] == "dev" and data["environments"] == ["dev", "prod"]
    assert data["database"] == str(project / "target" / "dev.duckdb") and data["database_exists"] is False
    assert data["build"] is None and "no build yet; run funnel build --env dev" in data["build_problem"]
    assert data["up_to_date"] is False and "full build (no build yet)" in data["plan"][0]
    assert data["postgres"] == "not configured"
    text = runner.invoke(app, ["status"])
    assert text.exit_code == 0, text.output
    assert "(does not exist)" in text.stdout and "no build yet" in text.stdout


def test_status_after_a_build_describes_it(built, runner):
    data = status_json(runner)
    database = built / "target" / "dev.duckdb"
    assert data["database_exists"] and data["database_bytes"] == database.stat().st_size
    build = data["build"]
    assert build["full"] is True and build["select"] is None and build["raw_data"] == str(built / "raw_data")
    manifest = compiled(built)
    assert [s["table"] for s in build["sources"]] == [s.table for s in manifest.sources]
    with duckdb.connect(str(database), read_only=True) as con:
        for source in build["sources"]:
            path = built / "raw_data" / f"{source['table']}.csv"
            assert source["path"] == str(path)
            assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # as sha256sum prints it
            assert source["rows"] == con.execute(f"select count(*) from pipedrive.{source['table']}").fetchone()[0]
    months = sorted({r[0] for r in read_report(database)})
    assert (build["first_month"], build["last_month"]) == (months[0].strftime("%Y-%m"), months[-1].strftime("%Y-%m"))
    assert sum(build["tests"].values()) == len(manifest.tests) and build["tests"]["ERROR"] == 0
    assert data["up_to_date"] is True and data["plan_problem"] is None
    text = runner.invoke(app, ["status"]).stdout
    assert "up to date   yes" in text and f"{build['first_month']} to {build['last_month']}" in text
    assert f"PASS={build['tests']['PASS']}" in text
    for source in build["sources"]:  # each file's whole hash, on its own line
        assert f"{source['table']}.csv" in text and f"sha256 {source['sha256']}\n" in text


def test_status_names_the_definitions_the_build_was_made_with(built, runner):
    # A build with --var counts differently from the README's defaults: status said nothing
    # of it, so two envs' figures looked comparable when they were not.
    data = status_json(runner)
    assert data["build"]["definitions"] == {} and data["build"]["pipeline"] is None  # the tiny seed names no pipeline
    text = runner.invoke(app, ["status"]).stdout
    assert "definitions  the defaults\n" in text and "pipeline " not in text
    assert runner.invoke(app, ["build", "--var", "stage_entry=every", "--var", "zero_fill=true"]).exit_code == 0
    data = status_json(runner)
    assert data["build"]["definitions"] == {"stage_entry": "every", "zero_fill": True}
    assert data["up_to_date"] is False  # a build now uses the defaults again
    assert "definitions  stage_entry=every, zero_fill=true\n" in runner.invoke(app, ["status"]).stdout


def test_status_sees_an_edit_that_keeps_size_and_mtime(built, runner):
    # Issue 26.3: status said "up to date yes" after a same-length edit and `touch -r`.
    same_length_edit(built / "raw_data" / "deal_changes.csv")
    data = status_json(runner)
    assert data["up_to_date"] is False
    assert any("load  source deal_changes" in line and "deal_changes.csv changed" in line for line in data["plan"])
    text = runner.invoke(app, ["status"]).stdout
    assert "up to date   no; funnel build would do this:" in text and "up to date   yes" not in text


def test_status_says_what_a_build_would_change(built, runner):
    model = next((built / "sql").rglob("int_deal_stage_history.sql"))
    model.write_text(model.read_text() + "\n-- edited\n")
    users = built / "raw_data" / "users.csv"
    users.write_bytes(users.read_bytes() + users.read_bytes().splitlines(keepends=True)[-1])
    data = status_json(runner)
    assert data["up_to_date"] is False
    plan = "\n".join(data["plan"])
    assert "users.csv changed" in plan and "int_deal_stage_history" in plan and "SQL changed" in plan
    text = runner.invoke(app, ["status"]).stdout
    assert "up to date   no" in text and "users.csv changed" in text


def test_status_reports_a_missing_export_and_a_broken_model_without_failing(built, runner):
    (built / "raw_data" / "stages.csv").unlink()
    data = status_json(runner)
    assert data["up_to_date"] is None and "stages.csv: file not found" in data["plan_problem"]
    assert data["build"] is not None  # the last build is still described
    (built / "sql" / "reporting" / "rep_broken.sql").write_text("select * from {{ ref('no_such_model') }}\n")
    data = status_json(runner)
    assert data["up_to_date"] is None and "no_such_model" in data["plan_problem"]


def test_status_of_an_env_naming_no_export(project, runner):
    (project / "environments.toml").write_text(ENVIRONMENTS.replace('raw_data = "raw_data"\n', "", 1))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "none named" in result.stdout and "up to date   unknown" in result.stdout


def test_status_of_an_unreadable_database(project, runner):
    (project / "target").mkdir()
    (project / "target" / "dev.duckdb").write_bytes(b"not a database" * 100)
    data = status_json(runner)
    assert data["database_exists"] and data["build"] is None
    assert "dev.duckdb: not a DuckDB database" in data["build_problem"]
    assert "if it is a damaged build, delete it" in data["build_problem"]


def test_status_fails_only_for_an_unusable_config(project, runner):
    (project / "environments.toml").write_text("[dev\n")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "invalid TOML" in error_line(result)
    (project / "environments.toml").write_text(ENVIRONMENTS)
    result = runner.invoke(app, ["status", "--env", "prd"])
    assert result.exit_code == 2 and "unknown environment 'prd'" in error_line(result)


def _with_postgres(project, **keys) -> None:
    table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    (project / "environments.toml").write_text(ENVIRONMENTS + f"\n[dev.postgres]\n{table}")


def test_status_postgres_that_does_not_answer_never_shows_the_password(project, runner, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "s3cret-Pa55")
    _with_postgres(project, host="127.0.0.1", port=1, user="ana", dbname="analytics")
    data = status_json(runner)
    assert data["postgres"] == "does not answer"
    assert data["postgres_target"] == "127.0.0.1:1/analytics as ana" and data["postgres_problem"]
    for output in (json.dumps(data), runner.invoke(app, ["status"]).output):
        assert "s3cret-Pa55" not in output


def test_status_postgres_with_a_password_in_the_config_is_refused_not_shown(project, runner):
    _with_postgres(project, host="127.0.0.1", dbname="postgresql://ana:s3cret-Pa55@db/x")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "postgres     refused" in result.stdout and "s3cret-Pa55" not in result.output


@pytest.mark.postgres
def test_status_postgres_that_answers(project, runner):
    import psycopg

    target = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
    try:
        psycopg.connect(**target, connect_timeout=3).close()  # type: ignore[arg-type]
    except psycopg.Error:
        pytest.skip("no PostgreSQL server answers at 127.0.0.1:5432")
    _with_postgres(project, **target)
    data = status_json(runner)
    assert data["postgres"] == "answers" and data["postgres_problem"] is None
    assert data["postgres_target"] == "127.0.0.1:5432/postgres as postgres"


def test_status_of_an_env_built_from_a_given_export_compares_with_that_export(project, runner):
    (project / "environments.toml").write_text(ENVIRONMENTS.replace('raw_data = "raw_data"\n', "", 1))
    assert runner.invoke(app, ["build", "--raw-data", "raw_data"]).exit_code == 0
    data = status_json(runner)
    assert data["raw_data"] == str(project / "raw_data") and data["raw_data_from_build"] is True
    assert data["up_to_date"] is True
    users = project / "raw_data" / "users.csv"
    users.write_bytes(users.read_bytes() + users.read_bytes().splitlines(keepends=True)[-1])
    data = status_json(runner)
    assert data["up_to_date"] is False and "users.csv changed" in "\n".join(data["plan"])
