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
    assert "rep_sales_funnel_monthly" in reporting
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{fmt}" for n in (*reporting, "int_deal_stage_history", "int_completed_activities")
    )
    written = duckdb.sql(f"select * from '{out}/rep_sales_funnel_monthly.{fmt}'").fetchall()
    expected = read_report(project / "build" / "dev.duckdb")
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
