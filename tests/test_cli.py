"""Every command and its error paths, through the CLI as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest

from funnel.cli import app

from .conftest import compiled, read_report


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1
    return lines[-1]


def test_build_reports_each_model_and_a_summary(project, runner):
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    for name in ("pipedrive.deal_changes", "stg_activity", "int_deal_stage_history", "rep_sales_funnel_monthly"):
        assert name in result.stderr
    assert f"{len(compiled(project).graph.models)} models" in result.stderr
    assert "ERROR=0" in result.stderr and "PASS=" in result.stderr
    assert result.stdout == ""  # progress is on stderr; stdout stays clean for pipes
    assert (project / "target" / "dev.duckdb").exists()


def test_show_month_as_csv(built, runner):
    result = runner.invoke(app, ["show", "--month", "2024-02", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["month", "kpi_name", "funnel_step", "deals_count"]
    assert {r[0] for r in rows[1:]} == {"2024-02-01"}
    steps = [r[2] for r in rows[1:]]
    assert steps == sorted(steps, key=float)  # funnel order
    expected = [r for r in read_report(built / "target" / "dev.duckdb") if str(r[0]) == "2024-02-01"]
    assert [(r[1], r[2], int(r[3])) for r in rows[1:]] == [(r[1], str(r[2]), r[3]) for r in expected]


def test_show_all_months_csv_equals_the_built_table(built, runner):
    result = runner.invoke(app, ["show", "-f", "csv"])
    rows = list(csv.reader(io.StringIO(result.stdout)))[1:]
    assert len(rows) == len(read_report(built / "target" / "dev.duckdb"))


def test_show_json(built, runner):
    result = runner.invoke(app, ["show", "--month", "2024-03", "--format", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records and set(records[0]) == {"month", "kpi_name", "funnel_step", "deals_count"}
    assert records[0]["month"] == "2024-03-01" and isinstance(records[0]["deals_count"], int)


def test_show_table_has_the_month_rows(built, runner):
    result = runner.invoke(app, ["show", "--month", "2024-02"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Step 1: Lead Generation" in result.stdout and "████" in result.stdout
    narrow = runner.invoke(app, ["show", "--month", "2024-02"], env={"COLUMNS": "80"})
    assert "Step 1: Lead Generation" in narrow.stdout and "████" not in narrow.stdout  # names stay whole
    assert "rep_sales_funnel_monthly · dev · 2024-02" in result.stdout


def test_show_another_model(built, runner):
    result = runner.invoke(app, ["show", "--model", "stg_stages", "-f", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["stage_id,stage_name", "1,Lead Generation"]


def test_compare_two_environments(built, runner):
    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    result = runner.invoke(app, ["show", "--compare", "prod", "--month", "2024-02", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and list(rows[0]) == ["month", "kpi_name", "funnel_step", "dev", "prod", "difference"]
    assert all(r["dev"] == r["prod"] and r["difference"] == "0" for r in rows)


def test_compare_shows_a_difference(built, runner, project):
    import duckdb

    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    with duckdb.connect(str(project / "target" / "prod.duckdb")) as con:
        con.execute(
            "update prod_pipedrive_analytics.rep_sales_funnel_monthly set deals_count = deals_count - 3 "
            "where month = '2024-02-01' and funnel_step = 1.0"
        )
    result = runner.invoke(app, ["show", "--compare", "prod", "--month", "2024-02", "-f", "csv"])
    first = next(csv.DictReader(io.StringIO(result.stdout)))
    assert first["funnel_step"] == "1.0" and first["difference"] == "3"
    assert int(first["dev"]) - int(first["prod"]) == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["show", "--env", "prd"], "unknown environment 'prd'. Did you mean 'prod'?"),
        (["show", "--month", "2023-01"], "no rows for 2023-01 in rep_sales_funnel_monthly (env 'dev'); the build covers"),
        (
            ["show", "--model", "rep_sales_funnel_montly"],
            "no model 'rep_sales_funnel_montly' in the build of env 'dev'. Did you mean 'rep_sales_funnel_monthly'?",
        ),
        (["show", "--env", "prod"], "no build of env 'prod' at"),
        (["show", "--compare", "prod"], "run funnel build --env prod first."),
        (["show", "--compare", "dev"], "--compare dev is the env being shown"),
        (["test", "--env", "prod"], "no build of env 'prod'"),
        (["build", "--select", "stg_stagez"], "--select: no model or folder named 'stg_stagez'. Did you mean 'stg_stages'?"),
        (["build", "--env", "stage"], "unknown environment 'stage'"),
    ],
    ids=[
        "unknown-env",
        "unknown-month",
        "unknown-model",
        "missing-build",
        "compare-missing-build",
        "compare-itself",
        "test-missing-build",
        "unknown-select",
        "build-unknown-env",
    ],
)
def test_errors_are_one_line_and_exit_1(built, runner, args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert words in error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ["show", "--month", "2024-2"],
        ["show", "--month", "2024-13"],
        ["show", "--month", "2024-02' or '1'='1"],
        ["show", "--format", "xml"],
        ["build", "--select", "stg_stages; drop table x"],
        ["build", "--wait", "-1"],
        ["generate", "--deals", "0"],
        ["no-such-command"],
    ],
    ids=["short-month", "month-13", "month-injection", "format", "select-injection", "negative-wait", "zero-deals", "command"],
)
def test_usage_errors_exit_2(built, runner, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_model_name_is_never_pasted_into_sql(built, runner):
    result = runner.invoke(app, ["show", "--model", 'x" ; drop table y; --'])
    assert result.exit_code == 1
    assert "is not a model name" in error_line(result)


def test_test_command_summary(built, runner):
    result = runner.invoke(app, ["test"])
    assert result.exit_code == 0, result.output
    assert "PASS=" in result.stderr and "WARN=" in result.stderr and "ERROR=0" in result.stderr


def test_test_command_fails_on_a_broken_build(built, runner, project):
    import duckdb

    with duckdb.connect(str(project / "target" / "dev.duckdb")) as con:
        con.execute(
            "update public_pipedrive_analytics.rep_sales_funnel_monthly set kpi_name = 'Step 1: Lost' where funnel_step = 1.0"
        )
    result = runner.invoke(app, ["test"])
    assert result.exit_code == 1
    assert "ERROR" in result.stderr and "kpi_name_matches_step" in result.stderr


def test_models_lists_layers_and_dependencies(project, runner):
    result = runner.invoke(app, ["models", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows["int_completed_activities"] == {
        "model": "int_completed_activities",
        "layer": "intermediate",
        "materialized": "table",
        "depends on": "stg_activity, stg_activity_types",
    }
    assert rows["stg_deal_changes"]["materialized"] == "view"
    assert list(rows)[0] == "funnel_steps"


def test_select_rebuilds_only_the_chosen_models(built, runner):
    for name in ("rep_sales_funnel_monthly", "int_deal_stage_history"):
        path = next((built / "sql").rglob(f"{name}.sql"))
        path.write_text(path.read_text() + "\n-- edited\n")
    result = runner.invoke(app, ["build", "--select", "rep_sales_funnel_monthly"])
    assert result.exit_code == 0, result.output
    assert "OK    table  rep_sales_funnel_monthly" in result.stderr
    assert "int_deal_stage_history" not in result.stderr  # edited, but not selected: it keeps its last result
    assert f"ran 1 of {len(compiled(built).graph.models)} models" in result.stderr


def test_select_without_a_previous_build_builds_everything(project, runner):
    result = runner.invoke(app, ["build", "--select", "staging"])
    assert result.exit_code == 0
    assert "full build (no build yet)" in result.stderr
    assert "OK    table  rep_sales_funnel_monthly" in result.stderr


def test_raw_data_option_and_variable(project, runner, tmp_path, monkeypatch):
    from funnel.generate import generate

    other = tmp_path / "other_export"
    generate(other, deals=40, seed=3)
    result = runner.invoke(app, ["build", "--raw-data", str(other)])
    assert result.exit_code == 0, result.output
    assert str(other) in result.stderr
    monkeypatch.setenv("FUNNEL_RAW_DATA", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "nowhere/deal_changes.csv: file not found" in error_line(result)


def test_generate_command(project, runner, tmp_path):
    result = runner.invoke(app, ["generate", "--deals", "50", "--seed", "1", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "activity.csv",
        "activity_types.csv",
        "deal_changes.csv",
        "fields.csv",
        "stages.csv",
        "users.csv",
    ]


def test_python_dash_m_and_help_work(project):
    result = subprocess.run([sys.executable, "-m", "funnel", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("build", "show", "test", "models", "generate"):
        assert command in result.stdout


def test_no_traceback_for_an_unwritable_build_folder(project, runner):
    (project / "target").write_text("a file where the build folder should be")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "cannot create the build folder" in error_line(result)


def test_readme_lists_exactly_the_cli_commands():
    from pathlib import Path

    import typer.main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `funnel (\w+)", section, flags=re.M))
    actual = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert documented == actual


def test_readme_shows_the_real_environments_toml():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    assert "```toml\n" + (root / "environments.toml").read_text() + "```" in (root / "README.md").read_text()
