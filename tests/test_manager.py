"""The manager's view in the terminal: `funnel show --summary` adds win rate by month added,
won value per month and currency, the open pipeline at the month's end and the sales cycle,
each the build's own numbers; an export without deals.csv says where to get one."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from funnel.cli import app

SCHEMA = "public_pipedrive_analytics"


def _query(root: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _tables(out: str) -> dict[str, list[list[str]]]:
    """The rich tables of `out` by title: each row's cells, stripped."""
    tables: dict[str, list[list[str]]] = {}
    title = ""
    for line in out.splitlines():
        if line.startswith("│"):
            tables[title].append([c.strip() for c in line.split("│")[1:-1]])
        elif line.strip() and line.strip()[0] not in "┏┃┡└":
            title = line.strip()
            tables[title] = []
    return tables


def _titled(tables: dict[str, list[list[str]]], start: str) -> list[list[str]]:
    (rows,) = [rows for title, rows in tables.items() if title.startswith(start)]
    return rows


def _latest_complete_month(project: Path) -> str:
    """The month before the one of deal_changes.csv's latest change_time (UTC): the last
    month the export does not end during."""
    with (project / "raw_data" / "deal_changes.csv").open(newline="", encoding="utf-8") as f:
        latest = max(datetime.fromisoformat(row["change_time"]) for row in csv.DictReader(f))
    year, month = (latest.year, latest.month - 1) if latest.month > 1 else (latest.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def test_show_summary_adds_the_deal_tables_with_the_builds_numbers(built: Path, runner: Any) -> None:
    # By default the summary is of the funnel's latest complete month, as the report opens on.
    ((month,),) = _query(
        built,
        f"select strftime(max(month), '%Y-%m') from {SCHEMA}.rep_sales_funnel_monthly where strftime(month, '%Y-%m') <= ?",
        [_latest_complete_month(built)],
    )
    result = runner.invoke(app, ["show", "--summary"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("top lost reasons") < out.index("win rate by month added") < out.index("sales cycle")
    tables = _tables(out)

    cohorts = _query(
        built,
        f"select strftime(cohort_month, '%Y-%m'), deals, won, lost, open, win_rate from {SCHEMA}.rep_win_rate_monthly "
        "where cohort_month between ?::date - interval 5 month and ?::date order by 1",
        [f"{month}-01", f"{month}-01"],
    )
    assert cohorts, "the tiny export has deals added in the last six months"
    expected = [
        [m, f"{d:,}", f"{w:,}", f"{lo:,}", f"{o:,}", "—" if r is None else f"{100 * r:.1f} %"] for m, d, w, lo, o, r in cohorts
    ]
    assert _titled(tables, "win rate by month added") == expected

    won = _query(
        built,
        f"select strftime(month, '%Y-%m'), currency, won_deals, won_value, avg_won_value from {SCHEMA}.rep_won_value_monthly "
        "where month between ?::date - interval 5 month and ?::date order by 1, 2",
        [f"{month}-01", f"{month}-01"],
    )
    shown = _titled(tables, "won value per month")
    assert shown == [[m, c, f"{n:,}", f"{v:,.2f}", f"{a:,.2f}"] for m, c, n, v, a in won] or (
        not won and "no deals won" in shown[0][0]
    )

    pipeline = _query(
        built,
        f"select funnel_step, kpi_name, currency, open_deals, open_value, weighted_value "
        f"from {SCHEMA}.rep_open_pipeline_month_end where month_end = last_day(?::date) order by 1 nulls last, 3",
        [f"{month}-01"],
    )
    shown = _titled(tables, f"open pipeline at the end of {month}")
    assert shown == [
        ["—" if s is None else str(s), k or "—", c, f"{n:,}", f"{v:,.2f}", f"{w:,.2f}"] for s, k, c, n, v, w in pipeline
    ] or (not pipeline and "no open deals" in shown[0][0])

    cycle = _query(built, f"select outcome, deals, median_days from {SCHEMA}.rep_sales_cycle order by outcome desc")
    assert [row[:3] for row in _titled(tables, "sales cycle")] == [[o, f"{d:,}", f"{m:.1f}"] for o, d, m in cycle]


def test_show_summary_of_an_export_without_deals_csv_says_where_to_get_one(project: Path, runner: Any) -> None:
    (project / "raw_data" / "deals.csv").unlink()
    assert runner.invoke(app, ["build"]).exit_code == 0
    result = runner.invoke(app, ["show", "--summary"])
    assert result.exit_code == 0, result.output
    assert "conversion and days in step" in result.stdout  # the funnel's summary is all there
    assert result.stdout.rstrip().splitlines()[-1] == "deals: no deals.csv in this export; `funnel pull` writes one."


def test_show_summary_marks_a_month_the_export_ends_during(sample_built: Path, runner: Any) -> None:
    complete = _latest_complete_month(sample_built)
    ((latest,),) = _query(sample_built, f"select strftime(max(month), '%Y-%m') from {SCHEMA}.rep_sales_funnel_monthly")
    assert latest > complete, "the sample's last month is incomplete"
    default = runner.invoke(app, ["show", "--summary"], env={"COLUMNS": "200"})
    assert list(_tables(default.stdout))[0] == f"rep_sales_funnel_monthly · dev · {complete}"
    result = runner.invoke(app, ["show", "--summary", "--month", latest], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    words = " ".join(result.stdout.split())  # rich wraps a title longer than its table
    for title in (
        f"rep_sales_funnel_monthly · dev · {latest} (incomplete)",
        f"conversion and days in step · dev · {latest} (incomplete)",
        f"top lost reasons · dev · {latest} (incomplete)",
        f"win rate by month added · dev · 6 months to {latest} (incomplete)",
        f"won value per month · dev · 6 months to {latest} (incomplete)",
        f"open pipeline at the end of {latest} (incomplete) · dev",
    ):
        assert title in words, title
    plain = runner.invoke(app, ["show", "--summary", "--month", complete], env={"COLUMNS": "200"})
    assert "(incomplete)" not in plain.stdout
