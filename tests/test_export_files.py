"""funnel export --format csv|parquet: files, written atomically (no PostgreSQL needed)."""

from __future__ import annotations

import csv

import duckdb
import pytest

from funnel.cli import app

from .conftest import REPO, read_report


def build(runner, *args: str) -> None:
    result = runner.invoke(app, ["build", *args])
    assert result.exit_code == 0, result.output


def export(runner, *args: str):
    return runner.invoke(app, ["export", *args])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_export(project, runner, tmp_path, fmt):
    build(runner)
    out = tmp_path / "out"
    result = export(runner, "--format", fmt, "--out", str(out), "--select", "reporting intermediate")
    assert result.exit_code == 0, result.output
    reporting = [p.stem for p in (REPO / "sql" / "reporting").glob("*.sql")]
    intermediate = [p.stem for p in (REPO / "sql" / "intermediate").glob("*.sql")]
    assert "rep_sales_funnel_monthly" in reporting and "int_deal_stage_history" in intermediate
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{fmt}" for n in (*reporting, *intermediate))
    written = duckdb.sql(f"select * from '{out}/rep_sales_funnel_monthly.{fmt}'").fetchall()
    expected = read_report(project / "target" / "dev.duckdb")
    if fmt == "csv":
        with (out / "rep_sales_funnel_monthly.csv").open() as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["month", "kpi_name", "funnel_step", "deals_count"]
        assert len(rows) - 1 == len(expected)
    else:
        assert written == expected


def test_file_export_needs_out(project, runner):
    result = export(runner, "--format", "csv")
    assert result.exit_code == 2


def test_file_export_to_an_unwritable_place_is_one_clear_line(project, runner, tmp_path):
    build(runner)
    blocked = tmp_path / "out"
    blocked.mkdir()
    (blocked / "rep_sales_funnel_monthly.csv").mkdir()  # a folder where the file must go
    result = export(runner, "--format", "csv", "--out", str(blocked))
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: {blocked}/rep_sales_funnel_monthly.csv")
    assert not [p for p in blocked.iterdir() if p.name.startswith(".")]


def test_scratch_folders_live_beside_the_build_and_only_dead_ones_are_removed(project, tmp_path):
    import subprocess
    import sys

    from funnel.project.config import load_config
    from funnel.workdir import SCRATCH_PREFIX, scratch_folder

    env = load_config(project).environment("dev")
    env.database.parent.mkdir(parents=True)
    # A folder left by a killed export: its lock file is not held by anyone.
    dead = env.database.parent / f"{SCRATCH_PREFIX}999999999-abc"
    dead.mkdir()
    (dead / "lock").touch()
    (dead / "rep_sales_funnel_monthly.csv").write_text("a full copy of a table\n")
    # One whose process died before it named its lock: its pid is gone.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    unlocked = env.database.parent / f"{SCRATCH_PREFIX}{gone.stdout.strip()}-def"
    unlocked.mkdir()
    with scratch_folder(env) as first:
        assert first.parent == env.database.parent and first.name.startswith(SCRATCH_PREFIX)
        assert not dead.exists() and not unlocked.exists()
        (first / "data.csv").write_text("x\n")
        with scratch_folder(env) as second:  # a second export meanwhile leaves the live one alone
            assert (first / "data.csv").exists() and second != first
        assert not second.exists()
    assert not first.exists()
