"""The manager's view in `funnel report`: one file holds every month (a month picker, a
pipeline picker where there are several), it opens on the latest complete month and marks
the incomplete ones, call steps stand beside the funnel, shares are between consecutive
stage steps, and the deal sections draw the build's numbers (checked in Chromium)."""

from __future__ import annotations

import csv
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from funnel.cli import app
from tests.test_html import ALL_CHARTS, CHARTS_DRAWN, SCHEMA, Browser, _query, browser, needs_chromium

__all__ = ["browser"]  # the module's Chromium, shared with test_html's fixture


def _report(root: Path, runner: Any, *args: str) -> str:
    result = runner.invoke(app, ["report", "--out", "r.html", *args])
    assert result.exit_code == 0, result.output
    return (root / "r.html").read_text(encoding="utf-8")


def _latest_change(export: Path) -> datetime:
    """The export's latest change_time, read from the CSV itself (not from the build)."""
    with (export / "deal_changes.csv").open(newline="") as f:
        return max(datetime.fromisoformat(row["change_time"]) for row in csv.DictReader(f))


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start : text.index("</section>", start)]


def test_one_file_holds_every_month_and_opens_on_the_latest_complete_one(sample_built: Path, runner: Any) -> None:
    text = _report(sample_built, runner)
    months = [
        m
        for (m,) in _query(
            sample_built, f"select distinct strftime(month, '%Y-%m') from {SCHEMA}.rep_sales_funnel_monthly order by 1"
        )
    ]
    latest = _latest_change(sample_built / "raw_data")
    incomplete = [m for m in months if m >= latest.strftime("%Y-%m")]
    complete = [m for m in months if m not in incomplete]
    assert incomplete and complete, "the sample ends within a month"
    options = re.findall(r'<option value="(\d{4}-\d{2})"( selected)?>([^<]*)</option>', _picker(text, "month-picker"))
    assert [m for m, _, _ in options] == months
    assert [m for m, selected, _ in options if selected] == [complete[-1]]
    assert [label for _, _, label in options] == [m + (" (incomplete)" if m in incomplete else "") for m in months]
    for anchor in ("funnel", "rep_owner_funnel_monthly", "rep_lost_reasons_monthly", "rep_open_pipeline_month_end"):
        blocks = re.findall(r'<div class="per-month" data-month="([^"]+)"( hidden)?>', _section(text, anchor))
        assert [m for m, _ in blocks] == months, anchor
        assert [m for m, hidden in blocks if not hidden] == [complete[-1]], anchor
    # Incomplete months are marked in the tables: their rows, and only theirs.
    trend = _section(text, "trend")
    marked = re.findall(r'<tr class="incomplete" title="incomplete month"><td>(\d{4}-\d{2})', trend)
    assert marked == incomplete
    for month in incomplete:
        assert f"{month} is not complete: the export ends during it." in _section(text, "funnel")
    # --month opens on another month; the file still holds them all.
    other = _report(sample_built, runner, "--month", months[0])
    assert re.findall(r'<option value="([\d-]+)" selected>', other) == [months[0]]


def _picker(text: str, picker: str) -> str:
    start = text.index(f'<select id="{picker}">')
    return text[start : text.index("</select>", start)]


def test_call_steps_stand_beside_the_funnel_and_shares_are_between_stage_steps(built: Path, runner: Any) -> None:
    text = _report(built, runner, "--month", "2024-03")
    steps = _query(built, f"select funnel_step, kpi_name, stage_id is not null from {SCHEMA}.funnel_steps order by 1")
    counts = dict(
        _query(built, f"select funnel_step, deals_count from {SCHEMA}.rep_sales_funnel_monthly where month = '2024-03-01'")
    )
    start = text.index('id="funnel-2024-03"')
    table = text[start : text.index("</table>", start)]
    rows = re.findall(
        r"<tr><td data-v=\"([\d.]+)\">[^<]*</td><td>([^<]*)</td><td data-v=\"(\d+)\">[^<]*</td><td data-v=\"([^\"]*)\">", table
    )
    assert [(Decimal(s), name) for s, name, _, _ in rows] == [(s, n) for s, n, _ in steps]
    stages = [s for s, _, is_stage in steps if is_stage]
    for (step, _, is_stage), (_, _, _, share) in zip(steps, rows, strict=True):
        if not is_stage or step == stages[0] or not counts.get(stages[stages.index(step) - 1]):
            assert share == "", step  # a call step, or nothing before: no share
        else:
            before = stages[stages.index(step) - 1]
            assert float(share) == pytest.approx(counts.get(step, 0) / counts[before]), step
    assert any(not is_stage for _, _, is_stage in steps)


def test_sections_are_titled_in_a_managers_words_and_name_no_local_path(built: Path, runner: Any) -> None:
    text = _report(built, runner)
    titles = dict(re.findall(r'<h2>([^<]+)<span class="caption">([^<]+)</span></h2>', text)[:6])
    assert titles == {
        "Deals at each step": "rep_sales_funnel_monthly",
        "Month by month": "rep_sales_funnel_monthly",
        "How many deals we win": "rep_win_rate_monthly",
        "What we won": "rep_won_value_monthly",
        "What is in the pipeline": "rep_open_pipeline_month_end",
        "How long a deal takes": "rep_sales_cycle",
    }
    assert "<p class='note'>export raw_data · built " in text
    assert str(built) not in text and "/tmp" not in text
    owners = [
        name
        for (name,) in _query(
            built, f"select distinct owner_name from {SCHEMA}.rep_owner_funnel_monthly where owner_name is not null"
        )
    ]
    cells = re.findall(r'<table class="sortable" id="owners-[^"]+">.*?</table>', text, re.S)
    shown = {c for table in cells for c in re.findall(r"<tr><td>([^<]*)</td>", table)}
    assert shown and shown <= {*owners, "(no owner)", "(unnamed user)"} | {f"{o} #{n}" for o in owners for n in range(2, 9)}


def test_an_export_without_deals_csv_says_where_to_get_one(project: Path, runner: Any) -> None:
    (project / "raw_data" / "deals.csv").unlink()
    assert runner.invoke(app, ["build"]).exit_code == 0
    text = _report(project, runner)
    for anchor in ("rep_win_rate_monthly", "rep_won_value_monthly", "rep_open_pipeline_month_end", "rep_sales_cycle"):
        assert "no deals.csv in this export; `funnel pull` writes one." in _section(text, anchor), anchor
    assert '<section id="funnel">' in text


def test_several_pipelines_get_a_pipeline_picker(built: Path, runner: Any) -> None:
    with duckdb.connect(str(built / "target" / "dev.duckdb")) as con:  # two pipelines, as stages.csv may name
        con.execute(f"update {SCHEMA}.rep_win_rate_monthly set pipeline = if(month(cohort_month) % 2 = 0, 'Partners', 'Direct')")
        for model in ("rep_won_value_monthly", "rep_open_pipeline_month_end", "rep_sales_cycle"):
            con.execute(f"update {SCHEMA}.{model} set pipeline = 'Direct'")
    text = _report(built, runner)
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', _picker(text, "pipeline-picker"))
    assert {key for key, _, _ in options} == {"Direct", "Partners"}
    assert [selected for _, selected, _ in options] == [" selected", ""]  # it opens on its first pipeline
    for anchor in ("rep_win_rate_monthly", "rep_sales_cycle"):
        blocks = re.findall(r'<div class="per-pipeline" data-pipeline="([^"]*)"( hidden)?>', _section(text, anchor))
        assert [key for key, _ in blocks] == [key for key, _, _ in options]
        assert [hidden for _, hidden in blocks] == ["", " hidden"]
    assert "No deal won or lost yet." in _section(text, "rep_sales_cycle")  # Partners has none


@needs_chromium
@pytest.mark.slow
def test_the_deal_charts_and_the_month_picker_draw_the_builds_numbers(sample_built: Path, runner: Any, browser: Browser) -> None:
    _report(sample_built, runner)
    browser.open(sample_built / "r.html", CHARTS_DRAWN)
    assert browser.problems() == []
    charts = browser.evaluate(ALL_CHARTS)

    won, lost, still_open, rate = charts["chart-rep_win_rate_monthly-0"]
    rows = _query(
        sample_built,
        f"select strftime(cohort_month, '%Y-%m-%d'), won, lost, open, win_rate from {SCHEMA}.rep_win_rate_monthly order by 1",
    )
    assert [won["x"], won["y"], lost["y"], still_open["y"], rate["y"]] == [list(c) for c in zip(*rows, strict=True)]

    values = _query(sample_built, f"select currency, strftime(month, '%Y-%m-%d'), won_value from {SCHEMA}.rep_won_value_monthly")
    drawn = {(t["name"], x): y for t in charts["chart-rep_won_value_monthly-0"] for x, y in zip(t["x"], t["y"], strict=True)}
    assert {k: v for k, v in drawn.items() if v is not None} == {(c, m): float(v) for c, m, v in values}

    month = browser.evaluate("document.getElementById('month-picker').value")
    open_id = browser.evaluate(
        "document.querySelector('#rep_open_pipeline_month_end .per-month:not([hidden]) div[id^=chart-]').id"
    )
    pipeline = _query(
        sample_built,
        f"select kpi_name, currency, open_value, weighted_value from {SCHEMA}.rep_open_pipeline_month_end "
        "where month_end = last_day(?::date)",
        [f"{month}-01"],
    )
    drawn = {(t["name"], x): y for t in charts[open_id] for x, y in zip(t["x"], t["y"], strict=True) if y is not None}
    expected = {(f"{c} open", k): float(v) for k, c, v, _ in pipeline} | {
        (f"{c} weighted", k): float(w) for k, c, _, w in pipeline
    }
    assert drawn == expected and expected

    cycle = _query(sample_built, f"select outcome, median_days, p75_days from {SCHEMA}.rep_sales_cycle order by outcome desc")
    median, p75, _ = charts["chart-rep_sales_cycle-0"]
    assert [median["x"], median["y"], p75["y"]] == [list(c) for c in zip(*cycle, strict=True)]

    # The trend shades the incomplete months; the picker shows another month's funnel.
    shapes = browser.evaluate("document.getElementById('chart-trend-0').layout.shapes.map(s => s.x0)")
    first_incomplete = _latest_change(sample_built / "raw_data").strftime("%Y-%m-01")
    assert shapes == [first_incomplete]
    browser.evaluate(
        "(() => { const p = document.getElementById('month-picker'); p.value = '2024-02';"
        " p.dispatchEvent(new Event('change')); })()"
    )
    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('#funnel .per-month:not([hidden]) tbody tr'))"
        ".map(r => [r.cells[1].textContent, Number(r.cells[2].dataset.v)])"
    )
    counts = _query(
        sample_built,
        f"select s.kpi_name, coalesce(f.deals_count, 0) from {SCHEMA}.funnel_steps s "
        f"left join {SCHEMA}.rep_sales_funnel_monthly f on f.funnel_step = s.funnel_step and f.month = '2024-02-01' "
        "order by s.funnel_step",
    )
    assert shown == [list(r) for r in counts]
    # Its charts are drawn as it shows (not before: a chart waits until its month is picked).
    assert browser.evaluate(CHARTS_DRAWN)
    funnel_id = browser.evaluate("document.querySelector('#funnel .per-month:not([hidden]) div[id^=chart-]').id")
    (funnel,) = browser.evaluate(ALL_CHARTS)[funnel_id]
    stage_counts = dict(zip(funnel["y"], funnel["x"], strict=True))
    assert stage_counts == {name: count for name, count in counts if name in stage_counts} and len(stage_counts) == 9
    assert browser.problems() == []
