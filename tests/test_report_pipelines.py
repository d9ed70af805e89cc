"""`funnel report` of an account with two pipelines whose months differ (the account of
test_pipelines.py, plus Renewals deals in months New Business has no deal in): the month
picker lists every pipeline's months, each pipeline's funnel of a month is that pipeline's
count (zero where it has none, never another pipeline's), the month-by-month trend follows
the pipeline picker, and Chromium draws what rep_pipeline_funnel_monthly holds."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from funnel.cli import app
from tests.conftest import new_project, work_in
from tests.test_html import ALL_CHARTS, CHARTS_DRAWN, SCHEMA, Browser, _query, browser, needs_chromium
from tests.test_pipelines import write_account

__all__ = ["browser"]  # the module's Chromium, shared with test_html's fixture
# One worker builds the account once for the module's tests (each worker would build its own).
pytestmark = pytest.mark.xdist_group("report-two-pipelines")

# Renewals deals (stages 21-23) in December 2024, February and March 2025, when New Business
# has none; March is before the export's latest change (2025-03-23), so it is incomplete.
EXTRA_CHANGES = [
    (7001, "2024-12-04 10:00:00", "stage_id", "21"),
    (7001, "2024-12-18 10:00:00", "stage_id", "22"),
    (7002, "2024-12-09 10:00:00", "stage_id", "21"),
    (7003, "2025-02-11 10:00:00", "stage_id", "21"),
    (7003, "2025-02-25 10:00:00", "stage_id", "23"),
    (7004, "2025-03-10 10:00:00", "stage_id", "21"),
]
EXTRA_ACTIVITIES = [(79_001, "call", 1, 7001, "True", "2024-12-10T09:00:00")]
PIPELINES = ("New Business", "Renewals")


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The account built once, with `r.html`, the report written with no options."""
    root = tmp_path_factory.mktemp("two-pipelines")
    export = root / "account"
    write_account(export)
    for name, rows in (("deal_changes.csv", EXTRA_CHANGES), ("activity.csv", EXTRA_ACTIVITIES)):
        with (export / name).open("a", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    with pytest.MonkeyPatch.context() as mp:
        project = new_project(root / "project", mp, export)
        for args in (["steps", "--write", "--calls", "call,meeting"], ["build"], ["report", "--out", "r.html"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
    return project


def _months(account: Path, where: str = "true") -> list[str]:
    sql = f"select distinct strftime(month, '%Y-%m') from {SCHEMA}.rep_pipeline_funnel_monthly where {where} order by 1"
    return [m for (m,) in _query(account, sql)]


def _report_months(account: Path) -> list[str]:
    """The months a manager expects in the picker: every pipeline's."""
    rows = _query(
        account,
        f"select strftime(month, '%Y-%m') from {SCHEMA}.rep_pipeline_funnel_monthly "
        f"union select strftime(month, '%Y-%m') from {SCHEMA}.rep_sales_funnel_monthly order by 1",
    )
    return [m for (m,) in rows]


def _renewals_only(account: Path) -> list[str]:
    only = sorted(set(_months(account, "pipeline = 'Renewals'")) - set(_months(account, "pipeline = 'New Business'")))
    assert only, "the fixture has months only Renewals has deals in"
    return only


def _counts(account: Path, pipeline: str, month: str) -> list[list[Any]]:
    """[step name, deals] of every step of `pipeline` in `month` (YYYY-MM), 0 where no row."""
    rows = _query(
        account,
        f"select s.kpi_name, coalesce(f.deals_count, 0) from {SCHEMA}.funnel_steps as s "
        f"left join {SCHEMA}.rep_pipeline_funnel_monthly as f "
        "on f.pipeline = s.pipeline and f.funnel_step = s.funnel_step and f.month = ?::date "
        "where s.pipeline = ? order by s.funnel_step",
        [f"{month}-01", pipeline],
    )
    return [list(r) for r in rows]


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start : text.index("</section>", start)]


def _picker(text: str, picker: str) -> list[tuple[str, str, str]]:
    start = text.index(f'<select id="{picker}">')
    options = text[start : text.index("</select>", start)]
    return re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', options)


def _blocks(section: str) -> dict[tuple[str, str], str]:
    """(month, pipeline) -> the markup of that pipeline's block in that month's block."""
    found = {}
    for month_block in section.split('<div class="per-month" data-month="')[1:]:
        for block in month_block.split('<div class="per-pipeline" data-pipeline="')[1:]:
            found[(month_block[:7], block[: block.index('"')])] = block
    return found


def _latest_change(export: Path) -> datetime:
    with (export / "deal_changes.csv").open(newline="") as f:
        return max(datetime.fromisoformat(row["change_time"]) for row in csv.DictReader(f))


def test_the_month_picker_lists_every_pipelines_months(account: Path) -> None:
    text = (account / "r.html").read_text(encoding="utf-8")
    months = _report_months(account)
    only = _renewals_only(account)
    latest = _latest_change(account / "raw_data").strftime("%Y-%m")
    incomplete = [m for m in months if m >= latest]
    complete = [m for m in months if m < latest]
    assert incomplete and set(only) & set(incomplete) and set(only) & set(complete)
    options = _picker(text, "month-picker")
    assert [m for m, _, _ in options] == months
    assert [label for _, _, label in options] == [m + (" (incomplete)" if m in incomplete else "") for m in months]
    # The latest complete month of the export, though only Renewals has deals in it.
    assert [m for m, selected, _ in options if selected] == [complete[-1]]
    assert [key for key, _, _ in _picker(text, "pipeline-picker")] == list(PIPELINES)


def test_each_pipelines_funnel_of_every_month_is_its_own_count(account: Path) -> None:
    text = (account / "r.html").read_text(encoding="utf-8")
    blocks = _blocks(_section(text, "funnel"))
    months = _report_months(account)
    assert set(blocks) == {(m, p) for m in months for p in PIPELINES}
    for (month, pipeline), block in blocks.items():
        rows = re.findall(r'<tr><td data-v="[\d.]+">[^<]*</td><td>([^<]*)</td><td data-v="(\d+)">', block)
        expected = _counts(account, pipeline, month)
        assert [[name, int(n)] for name, n in rows] == expected, (month, pipeline)
        # A month the pipeline has no deal in says so, beside its zeros.
        assert (f"No deal of {pipeline} reached a step in {month}." in block) == (not any(n for _, n in expected))
    assert any(f"No deal of New Business reached a step in {m}." in blocks[(m, "New Business")] for m in _renewals_only(account))


def test_report_opens_on_a_month_only_another_pipeline_has(account: Path, tmp_path: Path, monkeypatch: Any) -> None:
    work_in(account, monkeypatch)
    month = _renewals_only(account)[0]
    result = CliRunner().invoke(app, ["report", "--month", month, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert [m for m, selected, _ in _picker(text, "month-picker") if selected] == [month]
    months = _report_months(account)
    wrong = CliRunner().invoke(app, ["report", "--month", "1999-01", "--out", str(tmp_path / "x.html")])
    assert wrong.exit_code == 1
    assert wrong.stderr.splitlines() == [
        f"Error: no rows for 1999-01 in rep_pipeline_funnel_monthly (env 'dev'); the build covers {months[0]} to {months[-1]}."
    ]


def _opened(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The pipeline picker's selected options, and per section the pipeline blocks not hidden
    in the month the page opens on (the trend is not per month). The account has no
    deals.csv, so its deal sections have no pipeline blocks (test_report covers those)."""
    selected = [key for key, chosen, _ in _picker(text, "pipeline-picker") if chosen]
    shown: dict[str, list[str]] = {}
    for anchor in ("funnel", "trend"):
        section = _section(text, anchor)
        opened = re.search(r'<div class="per-month" data-month="[^"]*">(.*?)(?=<div class="per-month"|$)', section, re.S)
        markup = opened.group(1) if opened else section
        shown[anchor] = re.findall(r'<div class="per-pipeline" data-pipeline="([^"]*)">', markup)
    return selected, shown


def test_the_page_opens_on_a_pipeline_with_the_months_deals(account: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """The page opens on the latest complete month, which only Renewals has deals in: the
    pipeline picker opens on Renewals (its blocks shown, no other) instead of New Business's
    zeros. A month New Business has deals in opens on New Business, the pipeline the
    analyses count, which comes first."""
    text = (account / "r.html").read_text(encoding="utf-8")
    opened = next(m for m, selected, _ in _picker(text, "month-picker") if selected)
    assert opened in _renewals_only(account)
    selected, shown = _opened(text)
    assert selected == ["Renewals"]
    assert shown == dict.fromkeys(shown, ["Renewals"])
    assert [key for key, _, _ in _picker(text, "pipeline-picker")][0] == "New Business"

    work_in(account, monkeypatch)
    both = sorted(set(_months(account, "pipeline = 'New Business'")) & set(_months(account, "pipeline = 'Renewals'")))
    result = CliRunner().invoke(app, ["report", "--month", both[-1], "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    selected, shown = _opened((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert selected == ["New Business"]
    assert shown == dict.fromkeys(shown, ["New Business"])


def _figures(markup: str) -> list[dict[str, Any]]:
    return [json.loads(f) for f in re.findall(r'<script type="application/json" id="[^"]*-figure">(.*?)</script>', markup, re.S)]


def _trend(account: Path, pipeline: str) -> dict[str, list[int]]:
    """Step name -> deals per month of the report (0 where no row), for `pipeline`."""
    months = _report_months(account)
    rows = _query(
        account,
        f"select s.kpi_name, strftime(f.month, '%Y-%m'), f.deals_count from {SCHEMA}.funnel_steps as s "
        f"left join {SCHEMA}.rep_pipeline_funnel_monthly as f on f.pipeline = s.pipeline and f.funnel_step = s.funnel_step "
        "where s.pipeline = ? order by s.funnel_step",
        [pipeline],
    )
    counts = {(name, month): n for name, month, n in rows}
    return {name: [counts.get((name, m), 0) for m in months] for name in dict.fromkeys(name for name, _, _ in rows)}


def test_the_trend_follows_the_pipeline_picker(account: Path) -> None:
    text = (account / "r.html").read_text(encoding="utf-8")
    trend = _section(text, "trend")
    assert '<span class="caption">rep_pipeline_funnel_monthly</span>' in trend
    blocks = re.split(r'<div class="per-pipeline" data-pipeline="', trend)[1:]
    assert [b[: b.index('"')] for b in blocks] == list(PIPELINES)
    months = _report_months(account)
    for pipeline, block in zip(PIPELINES, blocks, strict=True):
        (figure,) = _figures(block)
        drawn = {t["name"]: t["y"] for t in figure["data"]}
        assert drawn == _trend(account, pipeline), pipeline
        assert all(t["x"] == [f"{m}-01" for m in months] for t in figure["data"])
        marked = re.findall(r'<tr class="incomplete" title="incomplete month"><td>(\d{4}-\d{2})', block)
        assert marked == [m for m in months if m >= _latest_change(account / "raw_data").strftime("%Y-%m")]


def _pick(browser: Browser, picker: str, value: str) -> None:
    browser.evaluate(
        f"(() => {{ const p = document.getElementById({json.dumps(picker)}); p.value = {json.dumps(value)};"
        " p.dispatchEvent(new Event('change')); })()"
    )
    assert browser.evaluate(f"document.getElementById({json.dumps(picker)}).value") == value


@needs_chromium
@pytest.mark.slow
def test_chromium_draws_the_picked_pipelines_month(account: Path, browser: Browser) -> None:
    browser.open(account / "r.html", CHARTS_DRAWN)
    assert browser.problems() == []
    month = _renewals_only(account)[0]
    _pick(browser, "pipeline-picker", "Renewals")
    _pick(browser, "month-picker", month)
    assert browser.evaluate(CHARTS_DRAWN)
    expected = _counts(account, "Renewals", month)
    assert any(n for _, n in expected)
    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('#funnel .per-month:not([hidden]) .per-pipeline:not([hidden]) tbody tr'))"
        ".map(r => [r.cells[1].textContent, Number(r.cells[2].dataset.v)])"
    )
    assert shown == expected
    charts = browser.evaluate(ALL_CHARTS)
    visible = "Array.from(document.querySelectorAll('{} div[id^=chart-]')).filter(d => d.offsetParent !== null).map(d => d.id)"
    funnel_id, calls_id = browser.evaluate(visible.format("#funnel"))
    stages = {name for (name,) in _query(account, f"select kpi_name from {SCHEMA}.funnel_steps where stage_id is not null")}
    (funnel,) = charts[funnel_id]
    (calls,) = charts[calls_id]
    assert list(zip(funnel["y"], funnel["x"], strict=True)) == [tuple(r) for r in expected if r[0] in stages]
    assert list(zip(calls["y"], calls["x"], strict=True)) == [tuple(r) for r in expected if r[0] not in stages]
    (trend_id,) = browser.evaluate(visible.format("#trend"))
    assert {t["name"]: t["y"] for t in charts[trend_id]} == _trend(account, "Renewals")

    # The same month of New Business, which has no deal in it: zeros and a note, not Renewals' numbers.
    _pick(browser, "pipeline-picker", "New Business")
    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('#funnel .per-month:not([hidden]) .per-pipeline:not([hidden]) tbody tr'))"
        ".map(r => [r.cells[1].textContent, Number(r.cells[2].dataset.v)])"
    )
    assert shown == _counts(account, "New Business", month) and not any(n for _, n in shown)
    note = "#funnel .per-month:not([hidden]) .per-pipeline:not([hidden]) p.note"
    assert browser.evaluate(f"document.querySelector('{note}').textContent") == (
        f"No deal of New Business reached a step in {month}."
    )
    (trend_id,) = browser.evaluate(visible.format("#trend"))
    assert {t["name"]: t["y"] for t in browser.evaluate(ALL_CHARTS)[trend_id]} == _trend(account, "New Business")
    assert browser.evaluate(CHARTS_DRAWN)
    assert browser.problems() == []


def test_the_analyses_say_which_pipeline_they_count(account: Path) -> None:
    """The pipeline picker does not switch the analyses (they count the var pipeline): each
    says whose deals it counts, so a manager who picked Renewals is not shown New Business
    under a Renewals picker without a word."""
    page = (account / "r.html").read_text(encoding="utf-8")
    with (account / "sql" / "seeds" / "funnel_steps.csv").open(newline="", encoding="utf-8") as f:
        counted = next(csv.DictReader(f))["pipeline"]  # the var's default: the seed's first pipeline
    analyses = ("rep_stage_conversion", "rep_deal_cohorts", "rep_stage_velocity", "rep_owner_funnel_monthly")
    for anchor in (*analyses, "rep_lost_reasons_monthly"):
        assert f'<section id="{anchor}">' in page, anchor
        section = page.split(f'<section id="{anchor}">', 1)[1].split("<section", 1)[0]
        assert f"Counted for the pipeline {counted} only, whatever the pipeline picker shows" in section, anchor
    funnel = page.split('<section id="funnel">', 1)[1].split("<section", 1)[0]
    assert "Counted for the pipeline" not in funnel  # the funnel follows the picker
