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

from .conftest import REPO, compiled, read_report


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
    header = "stage_id,stage_name,pipeline_id,pipeline_name,order_nr,deal_probability"
    assert result.stdout.splitlines()[:2] == [header, "1,Lead Generation,,,1,"]


@pytest.mark.slow  # the golden test compares two environments too
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
        (["show", "--month", "2023-01"], "no rows for 2023-01 in rep_sales_funnel_monthly (env 'dev'); the build covers"),
        (["show", "--from", "2030-01"], "no rows for 2030-01 to … in rep_sales_funnel_monthly (env 'dev'); the build covers"),
        (["show", "--env", "prod"], "no build of env 'prod' at"),
        (["show", "--compare", "prod"], "run funnel build --env prod first."),
        (["show", "--compare", "dev"], "--compare dev is the env being shown"),
        (["test", "--env", "prod"], "no build of env 'prod'"),
    ],
    ids=["unknown-month", "empty-range", "missing-build", "compare-missing-build", "compare-itself", "test-missing-build"],
)
def test_errors_are_one_line_and_exit_1(built, runner, args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert words in error_line(result)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["show", "--env", "prd"], "Invalid value for '--env': unknown environment 'prd' in "),
        (["show", "--compare", "prd"], "Invalid value for '--compare': unknown environment 'prd' in "),
        (["build", "--env", "stage"], "unknown environment 'stage' in "),
        (["test", "--env", "stage"], "unknown environment 'stage' in "),
        (
            ["show", "--model", "rep_sales_funnel_montly"],
            "no model 'rep_sales_funnel_montly' in the project. Did you mean 'rep_sales_funnel_monthly'?",
        ),
        (
            ["build", "--select", "stg_stagez"],
            "Invalid value for '--select': no model or folder named 'stg_stagez'. Did you mean",
        ),
        (["export", "--select", "rep_nothing", "-f", "csv", "--out", "x"], "no model or folder named 'rep_nothing'"),
        (["parity", "--select", "+stg_stagez"], "no model or folder named 'stg_stagez'"),
        (["show", "--month", "2024-02", "--from", "2024-01"], "give either --month or --from/--to"),
        (["show", "--from", "2024-03", "--to", "2024-01"], "--from 2024-03 is after --to 2024-01"),
        (["show", "--limit", "-1"], "Invalid value for '--limit'"),
    ],
    ids=[
        "unknown-env",
        "unknown-compare-env",
        "build-unknown-env",
        "test-unknown-env",
        "unknown-model",
        "unknown-select",
        "export-unknown-select",
        "parity-unknown-select",
        "month-and-range",
        "range-backwards",
        "negative-limit",
    ],
)
def test_values_that_name_nothing_are_usage_errors(built, runner, args, words):
    """A value typed on the command line that names nothing is a usage error: exit 2."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert words in error_line(result)
    assert "Traceback" not in result.output


def test_a_model_of_the_project_missing_from_the_build_says_to_build(built, runner):
    import duckdb

    with duckdb.connect(str(built / "target" / "dev.duckdb")) as con:
        con.execute("drop table public_pipedrive_analytics.rep_stage_velocity")
    result = runner.invoke(app, ["show", "--model", "rep_stage_velocity"])
    assert result.exit_code == 1, result.output
    assert "no model 'rep_stage_velocity' in the build of env 'dev'" in error_line(result)
    assert "funnel build --env dev" in error_line(result)


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
    assert result.exit_code == 2
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
        "depends_on": "stg_activity, stg_activity_types",
    }
    assert rows["stg_deal_changes"]["materialized"] == "view"
    assert list(rows)[0] == "funnel_steps"


def test_models_as_json_list_each_dependency(project, runner):
    result = runner.invoke(app, ["models", "--format", "json"])
    assert result.exit_code == 0, result.output
    records = {r["model"]: r for r in json.loads(result.stdout)}
    graph = compiled(project).graph
    assert list(records) == list(graph.order)
    for name, model in graph.models.items():
        assert records[name]["depends_on"] == [*model.refs, *(f"pipedrive.{s}" for s in model.sources)]
    assert records["stg_stages"]["depends_on"] == ["pipedrive.stages"]
    assert records["funnel_steps"]["depends_on"] == []


def test_select_rebuilds_only_the_chosen_models(built, runner):
    for name in ("rep_sales_funnel_monthly", "int_deal_stage_history"):
        path = next((built / "sql").rglob(f"{name}.sql"))
        path.write_text(path.read_text() + "\n-- edited\n")
    result = runner.invoke(app, ["build", "--select", "rep_sales_funnel_monthly"])
    assert result.exit_code == 0, result.output
    assert "OK    table  rep_sales_funnel_monthly" in result.stderr
    assert "int_deal_stage_history" not in result.stderr  # edited, but not selected: it keeps its last result
    graph = compiled(built).graph
    ran = {"rep_sales_funnel_monthly", *graph.downstream("rep_sales_funnel_monthly")}  # what reads it runs along
    assert f"ran {len(ran)} of {len(graph.models)} models" in result.stderr


def test_select_without_a_previous_build_builds_everything(project, runner):
    result = runner.invoke(app, ["build", "--select", "staging"])
    assert result.exit_code == 0
    assert "full build (no build yet)" in result.stderr
    assert "OK    table  rep_sales_funnel_monthly" in result.stderr


def test_raw_data_option_and_variable(project, runner, tmp_path, monkeypatch):
    from funnel.pipedrive.sample import generate

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
        "deals.csv",
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
    readme = (root / "README.md").read_text()
    assert "```toml\n" + (root / "environments.toml").read_text() + "```" in readme
    # every block showing the whole file shows this one (one said build/prod.duckdb)
    whole = [block for block in re.findall(r"```toml\n(.*?)```", readme, flags=re.S) if block.startswith("# One table per")]
    assert len(whole) >= 2 and set(whole) == {(root / "environments.toml").read_text()}


def test_version(runner):
    from importlib.metadata import version

    from funnel import __version__

    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0, result.output
        assert result.stdout == f"pipedrive-funnel {__version__}\n"  # the name to pip install
    assert version("pipedrive-funnel") == __version__  # pyproject.toml reads it from the package


def test_dash_h_is_help_everywhere(runner):
    import typer.main

    for command in [None, *typer.main.get_command(app).commands]:  # type: ignore[attr-defined]
        args = [command, "-h"] if command else ["-h"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout.startswith("Usage: ") and "--help" in result.stdout


def _help_commands() -> set[str]:
    result = subprocess.run([sys.executable, "-m", "funnel", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Commands:", 1)[1]
    return set(re.findall(r"^  (\w[\w-]*)\s", listed, flags=re.M))


def test_readme_command_table_and_help_list_the_same_commands():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `funnel (\w+)", section, flags=re.M))
    assert documented == _help_commands()


def _count(database, model: str) -> int:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(f"select count(*) from public_pipedrive_analytics.{model}").fetchone()[0]


def test_show_table_of_a_large_model_shows_the_first_50_rows_and_says_so(built, runner):
    total = _count(built / "target" / "dev.duckdb", "stg_deal_changes")
    assert total > 50
    result = runner.invoke(app, ["show", "--model", "stg_deal_changes"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"showing 50 of {total:,} rows; --limit 0 for all" in result.stdout
    assert sum(1 for line in result.stdout.splitlines() if line.startswith("│")) == 50
    everything = runner.invoke(app, ["show", "--model", "stg_deal_changes", "--limit", "0"], env={"COLUMNS": "120"})
    assert "showing" not in everything.stdout
    assert sum(1 for line in everything.stdout.splitlines() if line.startswith("│")) == total


def test_show_csv_and_json_give_every_row_unless_limited(built, runner):
    total = _count(built / "target" / "dev.duckdb", "stg_deal_changes")
    result = runner.invoke(app, ["show", "--model", "stg_deal_changes", "-f", "csv"])
    assert len(result.stdout.splitlines()) == total + 1 and "showing" not in result.stderr
    limited = runner.invoke(app, ["show", "--model", "stg_deal_changes", "-f", "json", "--limit", "7"])
    assert len(json.loads(limited.stdout)) == 7
    assert f"showing 7 of {total:,} rows; --limit 0 for all" in limited.stderr


def test_show_from_to_keeps_a_range_of_months(built, runner):
    result = runner.invoke(app, ["show", "--from", "2024-02", "--to", "2024-03", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = [r for r in read_report(built / "target" / "dev.duckdb") if "2024-02-01" <= str(r[0]) <= "2024-03-01"]
    assert [(r["month"], r["funnel_step"], int(r["deals_count"])) for r in rows] == [
        (str(r[0]), str(r[2]), r[3]) for r in expected
    ]
    cohorts = runner.invoke(app, ["show", "--model", "rep_deal_cohorts", "--from", "2024-03", "-f", "csv"])
    assert cohorts.exit_code == 0, cohorts.output
    months = {r["cohort_month"] for r in csv.DictReader(io.StringIO(cohorts.stdout))}
    assert months and min(months) == "2024-03-01"


def test_show_keeps_a_models_own_order(project, runner):
    (project / "sql" / "reporting" / "rep_latest_first.sql").write_text(
        "select month, deals_count from {{ ref('rep_sales_funnel_monthly') }} where funnel_step = 1.0 order by month desc\n"
    )
    assert runner.invoke(app, ["build"]).exit_code == 0
    result = runner.invoke(app, ["show", "--model", "rep_latest_first", "-f", "csv"])
    months = [r["month"] for r in csv.DictReader(io.StringIO(result.stdout))]
    assert len(months) > 2 and months == sorted(months, reverse=True)


def _bar_eighths(bar: str) -> int:
    return sum(8 if c == "█" else " ▏▎▍▌▋▊▉".index(c) for c in bar.strip())


def test_show_bars_are_proportional_to_the_count(sample_built, runner):
    result = runner.invoke(app, ["show", "--month", "2024-02"], env={"COLUMNS": "120"})
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.stdout.splitlines() if line.startswith("│")]
    bars = {int(count.replace(",", "")): _bar_eighths(bar) for *_, count, bar in cells}
    largest = max(bars)
    assert len(bars) > 5
    for count, eighths in bars.items():
        assert eighths >= 1
        assert abs(eighths - 128 * count / largest) <= 0.5  # 16 characters of 8 eighths for the largest
    counts = sorted(bars)
    assert all(bars[a] < bars[b] for a, b in zip(counts, counts[1:], strict=False) if 128 * (b - a) / largest >= 1)


def test_a_bar_of_1_is_shorter_than_a_bar_of_17():
    from datetime import date

    from funnel.cli.tables import _bars
    from funnel.outputs.query import Table

    rows = [(date(2024, 1, 1), "a", 1.0, 237), (date(2024, 1, 1), "b", 2.0, 17), (date(2024, 1, 1), "c", 3.0, 1)]
    top, seventeen, one = _bars(Table(("month", "kpi_name", "funnel_step", "deals_count"), rows, ""))
    assert 0 < _bar_eighths(one) < _bar_eighths(seventeen) < _bar_eighths(top)


def _run_in_terminal(args: list[str], cwd, columns: int = 80) -> str:
    """`funnel args` on a pseudo-terminal `columns` wide; what it printed (stdout and stderr)."""
    import os
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "funnel", *args], cwd=cwd, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


@pytest.mark.slow
def test_output_fits_80_columns_on_a_terminal(project):
    outputs = {
        "build": _run_in_terminal(["build"], project),
        "models": _run_in_terminal(["models"], project),
        "show": _run_in_terminal(["show", "--model", "stg_deal_changes"], project),
    }
    path = next((project / "sql").rglob("int_deal_stage_history.sql"))
    path.write_text(path.read_text() + "\n-- edited\n")
    outputs["dry-run"] = _run_in_terminal(["build", "--dry-run"], project)
    for name, text in outputs.items():
        # A path is as long as it is; every other line fits.
        too_wide = [line for line in text.splitlines() if len(line.rstrip()) > 80 and str(project) not in line]
        assert not too_wide, (name, too_wide)
    for model in compiled(project).graph.models:  # every name whole, ready for --select
        assert re.search(rf"^{model}\s", outputs["models"], flags=re.M), model
    assert "int_deal_stage_history" in outputs["dry-run"]


def test_build_lines_fit_80_columns_in_a_log(project, runner):
    """What a build did fits 80 columns in a log too (the plan keeps its lines whole there)."""
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("Building", "Plan for"))]
    assert lines and max(len(line) for line in lines) <= 80, result.stderr


def test_generate_out_is_relative_to_the_current_folder(project, runner, monkeypatch):
    import hashlib

    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    before = digest(project / "raw_data")
    inside = project / "analysis"
    inside.mkdir()
    monkeypatch.chdir(inside)
    for args in (["--out", "mine"], []):  # the default, raw_data, is raw_data/ of the current folder too
        result = runner.invoke(app, ["generate", "--deals", "30", *args])
        assert result.exit_code == 0, result.output
    assert len(list((inside / "mine").glob("*.csv"))) == 7
    assert len(list((inside / "raw_data").glob("*.csv"))) == 7
    assert digest(project / "raw_data") == before


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_clean_removes_build_outputs_and_nothing_else(built, runner):
    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    target = built / "target"
    (target / ".dev.duckdb.4242.tmp").write_bytes(b"x" * 1000)  # a killed build's
    scratch = target / ".funnel-export-999999-abc"  # a killed export's (no such pid)
    scratch.mkdir()
    (scratch / "rep.csv").write_bytes(b"y" * 500)
    (target / "notes.txt").write_text("mine")
    kept = {name: _tree(built / name) for name in ("raw_data", "sql")}
    before = {p: p.stat().st_size for p in target.rglob("*") if p.is_file()}
    entries = set(target.iterdir())
    result = runner.invoke(app, ["clean", "--env", "dev"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["notes.txt", "prod.duckdb", "prod.duckdb.lock", ".funnel-manifest-prod_pipedrive_analytics.json"]
    )
    for name in ("target/dev.duckdb", "target/.dev.duckdb.4242.tmp", "target/.funnel-export-999999-abc"):
        assert f"removed  {name} (" in result.stderr
    from funnel.cli.console import _bytes

    freed = sum(size for path, size in before.items() if not path.exists())
    gone = len(entries - set(target.iterdir()))
    assert f"Removed {gone} file(s) and folder(s), {_bytes(freed)} freed" in result.stderr
    assert {name: _tree(built / name) for name in ("raw_data", "sql")} == kept
    everything = runner.invoke(app, ["clean"])
    assert everything.exit_code == 0 and "removed  target/prod.duckdb" in everything.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert "Nothing to clean" in runner.invoke(app, ["clean"]).stderr
    assert runner.invoke(app, ["build"]).exit_code == 0  # and the next build is a full one


def test_clean_after_a_failed_build_and_funnel_docs_leaves_no_file_of_funnels(project, runner):
    # It left <db>.failures.json (copies of the failing rows, which test --failures then
    # described as a build that no longer exists) and target/docs/index.html.
    before = _tree(project)
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert runner.invoke(app, ["docs"]).exit_code == 0
    (project / "sql" / "tests" / "always_fails.sql").write_text("select 1 as x")
    failed = runner.invoke(app, ["build"])
    assert failed.exit_code == 1 and "always_fails" in failed.stderr
    assert (project / "target" / "dev.duckdb.failures.json").is_file()
    (project / "sql" / "tests" / "always_fails.sql").unlink()
    result = runner.invoke(app, ["clean"])
    assert result.exit_code == 0, result.output
    for name in ("target/dev.duckdb.failures.json", "target/docs/index.html"):
        assert f"removed  {name} (" in result.stderr
    assert _tree(project) == before
    assert not (project / "target" / "docs").exists()


def test_clean_removes_what_a_killed_cache_or_docs_writer_left_and_not_a_file_named_like_the_cache(built, runner):
    # The cache was matched as `.funnel-manifest-<schema>.json*`: a user's copy of it went,
    # the temporary file a killed writer leaves (`..funnel-manifest-...json.<pid>.tmp`) stayed.
    target = built / "target"
    cache = ".funnel-manifest-public_pipedrive_analytics.json"
    (target / f"{cache}.orig").write_text("mine")
    (target / f".{cache}.999999.tmp").write_text("{")  # no such pid: a killed writer's
    assert runner.invoke(app, ["docs"]).exit_code == 0
    (target / "docs" / ".index.html.999999.tmp").write_text("<html>")
    result = runner.invoke(app, ["clean"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == [f"{cache}.orig"]
    for name in (f".{cache}.999999.tmp", "docs/.index.html.999999.tmp"):
        assert f"removed  target/{name} (" in result.stderr


def test_clean_says_once_why_it_keeps_a_users_file_named_like_export_scratch(built, runner):
    # Said once per env sharing target/, and as "an export or parity is using it".
    mine = built / "target" / ".funnel-export-notes.txt"
    mine.write_text("mine")
    result = runner.invoke(app, ["clean"])
    assert result.exit_code == 0, result.output
    assert mine.read_text() == "mine"
    kept = [line for line in result.stderr.splitlines() if "kept" in line]
    assert kept == ["  kept     target/.funnel-export-notes.txt: not an export's scratch folder; left as it is"]


def test_clean_keeps_a_docs_page_funnel_did_not_write(project, runner):
    page = project / "target" / "docs" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("<h1>our team's own page</h1>")
    result = runner.invoke(app, ["clean"])
    assert result.exit_code == 0, result.output
    assert page.read_text() == "<h1>our team's own page</h1>"
    assert "not a page of funnel docs" in result.stderr


def test_clean_never_removes_a_database_path_that_is_not_a_duckdb_file(project, runner):
    (project / "environments.toml").write_text(ENVIRONMENTS_AT_RAW)
    before = _tree(project / "raw_data")
    result = runner.invoke(app, ["clean"])
    assert result.exit_code == 0, result.output
    assert "kept     raw_data/users.csv: not a DuckDB file" in result.stderr
    assert _tree(project / "raw_data") == before


def test_clean_keeps_a_duckdb_database_funnel_did_not_build_and_its_wal(project, runner):
    # A build refuses to replace it (no _funnel.build_info: the user's own, named by
    # mistake); clean removed it, and its WAL, where its last writes were.
    import os

    import duckdb

    from .conftest import ENVIRONMENTS

    (project / "environments.toml").write_text(ENVIRONMENTS.replace("target/prod.duckdb", "target/analytics.duckdb"))
    mine = project / "target" / "analytics.duckdb"
    mine.parent.mkdir()
    code = (
        "import duckdb, os; con = duckdb.connect(os.environ['DB']); con.execute('pragma disable_checkpoint_on_shutdown');"
        " con.execute('create table precious as select 42 as answer'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "DB": str(mine)}, check=True)
    assert (project / "target" / "analytics.duckdb.wal").is_file()  # the table is only there
    before = _tree(project / "target")
    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 1
    result = runner.invoke(app, ["clean"])
    assert result.exit_code == 0, result.output
    assert "kept     target/analytics.duckdb: a DuckDB database funnel did not build" in result.stderr
    assert {k: v for k, v in _tree(project / "target").items() if k.startswith("analytics")} == before
    with duckdb.connect(str(mine), read_only=True) as con:
        assert con.execute("select answer from precious").fetchall() == [(42,)]


ENVIRONMENTS_AT_RAW = """\
[dev]
database = "raw_data/users.csv"
schema = "public_pipedrive_analytics"
raw_data = "raw_data"
"""


def test_clean_is_refused_while_a_build_runs(built, runner):
    from funnel.project.config import load_config
    from funnel.workdir import build_lock

    env = load_config(built).environment("dev")
    with build_lock(env):
        result = runner.invoke(app, ["clean", "--env", "dev"])
    assert result.exit_code == 1
    assert "another build of env 'dev' is running" in error_line(result)
    assert (built / "target" / "dev.duckdb").exists()


def test_a_build_waiting_while_clean_runs_takes_the_new_lock(built, runner):
    """clean removes the lock file while holding it; a build that waited on the old file must not
    think it holds the lock beside a build that locked the new one."""
    import threading

    from funnel.errors import BuildBusy
    from funnel.project.config import load_config
    from funnel.workdir import build_lock

    env = load_config(built).environment("dev")
    entered = threading.Event()
    release = threading.Event()
    results: list[str] = []

    def waiting_build() -> None:
        entered.set()
        with build_lock(env, wait=10):
            results.append("locked")
            release.wait(10)

    with build_lock(env):
        thread = threading.Thread(target=waiting_build)
        thread.start()
        entered.wait(5)
        (built / "target" / "dev.duckdb.lock").unlink()  # what clean does while holding it
    import time

    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)
    assert results == ["locked"]
    with pytest.raises(BuildBusy):  # the new lock file is held: nobody else gets in
        with build_lock(env):
            pass
    release.set()
    thread.join(5)


WORKFLOWS = REPO / ".github" / "workflows"


def _workflow(name: str) -> dict:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_ci_workflow_runs_ci_run_with_a_postgres_service():
    job = _workflow("ci.yml")["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    service = job["services"]["postgres"]
    assert service["image"] == "postgres:15" and service["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in service["ports"] and "--health-cmd" in service["options"]
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    assert any(s.get("run") == ".ci/run" for s in job["steps"])


def test_release_workflow_tests_the_install_then_publishes_with_trusted_publishing():
    workflow = _workflow("release.yml")
    assert workflow["on"]["push"]["tags"] == ["v*"]
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    runs = " ".join(s.get("run", "") for s in build["steps"])
    assert "tests/test_install.py" in runs and "-m build" in runs  # the install test, then sdist + wheel
    assert publish["needs"] == "build" and publish["permissions"] == {"id-token": "write"}
    assert any(s.get("uses", "").startswith("pypa/gh-action-pypi-publish@") for s in publish["steps"])
    assert "secrets." not in (WORKFLOWS / "release.yml").read_text()  # no token: PyPI trusts the workflow


def test_refresh_example_is_a_scheduled_prod_refresh_with_commands_that_exist(runner):
    import shlex

    workflow = _workflow("refresh.yml.example")
    assert workflow["on"]["schedule"][0]["cron"]
    job = workflow["jobs"]["refresh"]
    assert job["env"]["PGPASSWORD"] == "${{ secrets.PGPASSWORD }}"
    assert job["env"]["PIPEDRIVE_API_TOKEN"] == "${{ secrets.PIPEDRIVE_API_TOKEN }}"
    commands = [shlex.split(s["run"])[1:] for s in job["steps"] if s.get("run", "").startswith(".venv/bin/funnel ")]
    assert [c[0] for c in commands[:3]] == ["build", "test", "export"]
    assert all(c[1:3] == ["--env", "prod"] for c in commands)
    for command in commands:  # every option is one the CLI knows
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
