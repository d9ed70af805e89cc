"""The sections of `funnel report` that count deals through the funnel: the month's funnel,
the months side by side, stage conversion, cohorts, days in stage, owners, lost reasons,
then data quality and provenance. funnel/outputs/report_deals.py has the money sections;
funnel/outputs/html_report.py reads the build and puts the page together.

A section is a list of parts: markup (escaped here) and plotly figures (dicts, whose export
text html_report.chart_text escapes). A part of one month sits in a block the month picker
shows (`per_month`), a part of one pipeline in a block the pipeline picker shows
(`per_pipeline`); months after the latest complete one are marked in every chart (shaded,
`shade_incomplete`) and table (`incomplete` rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import names
from funnel.build import record as records
from funnel.errors import first_line, n_rows, shorten
from funnel.outputs.html import esc, table
from funnel.project import checks
from funnel.quoting import relation

if TYPE_CHECKING:
    import duckdb

    from funnel.project.manifest import Manifest

FUNNEL, STEPS, PIPELINE_FUNNEL = names.SALES_FUNNEL, names.FUNNEL_STEPS, names.PIPELINE_FUNNEL
CONVERSION, VELOCITY = names.STAGE_CONVERSION, names.STAGE_VELOCITY


SHADE = "rgba(224, 123, 57, 0.14)"


@dataclass
class Section:
    """One part of the page: a title in a manager's words, the model it reads (a small
    caption), a sentence saying what it shows, then markup and figures in order."""

    anchor: str
    title: str
    model: str
    note: str
    parts: list[str | dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    number: Decimal
    name: str
    is_stage: bool  # a stage step (the funnel's shape); else a call step, drawn beside it


@dataclass
class Context:
    """What every section needs: the open build, its months, which are incomplete, and the
    month the page opens on."""

    con: duckdb.DuckDBPyConnection
    schema: str
    months: list[date]  # every month of any pipeline's funnel, first days, in order
    incomplete: set[date]  # months that end after the export's latest change
    opened: date
    steps: list[Step]
    present: set[str]
    found: records.BuildRecord | None = None
    pipeline: str = ""  # the key the pipeline picker opens on (opened_pipeline); "" for no picker

    def rel(self, model: str) -> str:
        return relation(self.schema, model)

    def label(self, month: date) -> str:
        """'2024-03', or '2024-05 (incomplete)': how a chart's category names a month."""
        return month.strftime("%Y-%m") + (" (incomplete)" if month in self.incomplete else "")

    def incomplete_row(self, index: int) -> Callable[[tuple[Any, ...]], bool]:
        """For table(): whether a row (its month in column `index`) is of an incomplete month."""
        return lambda row: _first_day(row[index]) in self.incomplete


def _first_day(value: Any) -> date | None:
    return value.replace(day=1) if isinstance(value, date) else None


def per_month(ctx: Context, month: date, parts: list[str | dict[str, Any]]) -> Iterator[str | dict[str, Any]]:
    """`parts` in a block that shows when the month picker is on `month` (hidden otherwise)."""
    key = month.strftime("%Y-%m")
    hidden = "" if month == ctx.opened else " hidden"
    yield f'<div class="per-month" data-month="{key}"{hidden}>'
    if month in ctx.incomplete:
        yield f"<p class='incomplete-note'>{key} is not complete: the export ends during it.</p>"
    yield from parts
    yield "</div>"


def per_pipeline(ctx: Context, key: str, parts: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
    """`parts` in a block that shows when the pipeline picker is on `key`; the others'
    blocks than the one the picker opens on (`ctx.pipeline`) start hidden."""
    hidden = "" if key == ctx.pipeline else " hidden"
    return [f'<div class="per-pipeline" data-pipeline="{esc(key)}"{hidden}>', *parts, "</div>"]


def pipeline_key(pipeline: str | None) -> str:
    return pipeline if pipeline is not None else ""


def pipeline_label(pipeline: str | None) -> str:
    return pipeline if pipeline is not None else "(no pipeline)"


def days_figure(x: list[Any], rows: list[Any], first: int, layout: dict[str, Any]) -> dict[str, Any]:
    """Median and 75th percentile as bars, the average as markers: columns first, first + 1
    and first + 2 of rows, over x (the velocity of steps, the sales cycle of outcomes)."""
    return {
        "data": [
            {"type": "bar", "name": "median days", "x": x, "y": [r[first] for r in rows]},
            {"type": "bar", "name": "75th percentile", "x": x, "y": [r[first + 1] for r in rows]},
            {"type": "scatter", "mode": "markers", "name": "average", "x": x, "y": [r[first + 2] for r in rows]},
        ],
        "layout": {"barmode": "group", "yaxis": {"title": {"text": "days"}}, **layout},
    }


def shade_incomplete(ctx: Context, figure: dict[str, Any], categories: bool = False) -> dict[str, Any]:
    """`figure` (months on its x axis) with the incomplete months shaded and labelled."""
    late = sorted(ctx.incomplete)
    if not late:
        return figure
    if categories:  # a category axis: from the first incomplete month's label to the last's
        shape: dict[str, Any] = {"x0": ctx.label(late[0]), "x1": ctx.label(late[-1])}
    else:
        shape = {"x0": late[0].isoformat(), "x1": _next_month(late[-1]).isoformat()}
    shape.update({"type": "rect", "xref": "x"})
    shape.update({"yref": "paper", "y0": 0, "y1": 1, "fillcolor": SHADE, "line": {"width": 0}, "layer": "below"})
    note = {"x": shape["x0"], "xref": "x", "y": 1, "yref": "paper", "text": "incomplete", "showarrow": False}
    layout = {**figure["layout"], "shapes": [shape], "annotations": [{**note, "xanchor": "left", "yanchor": "bottom"}]}
    return {**figure, "layout": layout}


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def read_steps(con: duckdb.DuckDBPyConnection, schema: str, present: set[str], pipeline: str | None = None) -> list[Step]:
    """Every step of FUNNEL in order: from the seed (a stage step has a stage_id; only
    `pipeline`'s steps, the one FUNNEL counts, when the seed names pipelines), else from
    the report itself (whole steps are stage steps)."""
    if STEPS in present:
        of_pipeline, params = ("", []) if pipeline is None else (" where pipeline = ?", [pipeline])
        seed = con.execute(
            f"select funnel_step, kpi_name, stage_id is not null from {relation(schema, STEPS)}{of_pipeline} order by 1", params
        )
        return [Step(s, n, bool(is_stage)) for s, n, is_stage in seed.fetchall()]
    rows = con.execute(f"select distinct funnel_step, kpi_name from {relation(schema, FUNNEL)} order by 1").fetchall()
    return [Step(s, n, s == s.to_integral_value()) for s, n in rows]


def previous_stage(step: Step, steps: list[Step]) -> Step | None:
    """The stage step before a stage step (call steps skipped); None for a call step and the first."""
    if not step.is_stage:
        return None
    stages = [s for s in steps if s.is_stage]
    at = stages.index(step)
    return stages[at - 1] if at > 0 else None


@dataclass(frozen=True)
class PipelineFunnel:
    """One pipeline of the picker: its steps and its counts by month and step (PIPELINE_FUNNEL)."""

    key: str
    name: str
    steps: list[Step]
    counts: dict[date, dict[Decimal, int]]
    analysed: bool  # the var pipeline, which the analyses count: only its funnel gets their columns


def pipeline_funnels(ctx: Context, pipelines: list[tuple[str, str | None]]) -> list[PipelineFunnel]:
    """Per pipeline of the picker (key, name), its funnel; [] with one pipeline, or one
    unnamed one (a seed without a pipeline column): the page then draws FUNNEL alone."""
    if len(pipelines) < 2 or PIPELINE_FUNNEL not in ctx.present:
        return []
    analysed = (ctx.found.vars.get("pipeline") if ctx.found else None) or None
    counts: dict[str | None, dict[date, dict[Decimal, int]]] = {}
    rows = ctx.con.execute(f"select pipeline, month, funnel_step, deals_count from {ctx.rel(PIPELINE_FUNNEL)}")
    for pipeline, month, step, count in rows.fetchall():
        counts.setdefault(pipeline, {}).setdefault(month, {})[step] = count
    if not set(counts) - {None}:
        return []
    found = []
    for key, pipeline in pipelines:
        steps = ctx.con.execute(
            f"select funnel_step, kpi_name, stage_id is not null from {ctx.rel(STEPS)} "
            "where pipeline is not distinct from ? order by 1",
            [pipeline],
        ).fetchall()
        shown = [Step(number, name, bool(is_stage)) for number, name, is_stage in steps]
        mine = pipeline is not None and pipeline == analysed
        found.append(PipelineFunnel(key, pipeline_label(pipeline), shown, counts.get(pipeline, {}), mine))
    return found


def opened_pipeline(shown: list[str | None], several: list[PipelineFunnel], month: date) -> str:
    """The key of the pipeline the picker opens on: the first of `shown` (the var pipeline's,
    which the analyses count, comes first) with a deal at a step in `month`, the month the
    page opens on; else the first. A page should not open on zeros while another pipeline
    has that month's deals."""
    with_deals = [p.key for p in several if any(p.counts.get(month, {}).values())]
    if with_deals:
        return with_deals[0]
    return pipeline_key(shown[0]) if shown else ""


def funnel_section(ctx: Context, several: list[PipelineFunnel] | None = None) -> Section:
    """The month's funnel; with `several` pipelines (pipeline_funnels), one block per
    pipeline in each month's (the pipeline picker shows one), counted by PIPELINE_FUNNEL."""
    rows = ctx.con.execute(f"select month, funnel_step, deals_count from {ctx.rel(FUNNEL)}").fetchall()
    counts: dict[date, dict[Decimal, int]] = {}
    for month, step, count in rows:
        counts.setdefault(month, {})[step] = count
    cohort: dict[tuple[date, Decimal], tuple[Any, ...]] = {}
    if CONVERSION in ctx.present:
        for month, step, entered, to_step, converted, rate in ctx.con.execute(
            f"select cohort_month, from_step, entered, to_step, converted, conversion_rate from {ctx.rel(CONVERSION)}"
        ).fetchall():
            cohort[(month, step)] = (entered, to_step, converted, rate)
    days: dict[Decimal, Any] = {}
    if VELOCITY in ctx.present:
        days = dict(ctx.con.execute(f"select funnel_step, median_days from {ctx.rel(VELOCITY)}").fetchall())
    parts: list[str | dict[str, Any]] = []
    for month in ctx.months:
        if not several:
            parts += per_month(ctx, month, _funnel_month(ctx, month, counts.get(month, {}), cohort, days))
            continue
        blocks: list[str | dict[str, Any]] = []
        for at, pipeline in enumerate(several):
            mine = (cohort, days) if pipeline.analysed else ({}, {})
            of_month = pipeline.counts.get(month, {})
            drawn = _funnel_month(ctx, month, of_month, *mine, pipeline.steps, f"-{at + 1}", f" of {pipeline.name}")
            blocks += per_pipeline(ctx, pipeline.key, drawn)
        parts += per_month(ctx, month, blocks)
    note = (
        "Deals that reached each stage step in the month, with the share of the step before (stage steps only); "
        "call steps are drawn beside the funnel. The cohort columns follow the deals that first entered a stage step "
        "that month to the next stage step; median days in the step are over the whole build."
    )
    return Section("funnel", "Deals at each step", PIPELINE_FUNNEL if several else FUNNEL, note, parts)


def _funnel_month(
    ctx: Context,
    month: date,
    counts: dict[Decimal, int],
    cohort: dict[tuple[date, Decimal], tuple[Any, ...]],
    days: dict[Decimal, Any],
    steps: list[Step] | None = None,
    tag: str = "",
    of: str = "",
) -> list[str | dict[str, Any]]:
    steps = ctx.steps if steps is None else steps
    stages = [s for s in steps if s.is_stage]
    calls = [s for s in steps if not s.is_stage]
    texts, table_rows = [], []
    for step in steps:
        count = counts.get(step.number, 0)
        before = previous_stage(step, steps)
        share = count / counts[before.number] if before is not None and counts.get(before.number) else None
        if step.is_stage:
            of_before = f" · {100 * share:.1f} % of step {before.number}" if before is not None and share is not None else ""
            texts.append(f"{count:,}" + of_before)
        detail = cohort.get((month, step.number), (None,) * 4) if step.is_stage else (None,) * 4
        table_rows.append(
            (step.number, step.name, count, share, before.number if before else None, *detail, days.get(step.number))
        )
    funnel = {
        "data": [
            {
                "type": "funnel",
                "y": [s.name for s in stages],
                "x": [counts.get(s.number, 0) for s in stages],
                "text": texts,
                "textinfo": "text",
                "hovertemplate": "%{y}<br>%{x:,} deals<extra></extra>",
                "marker": {"color": "#3a6ea5"},
            }
        ],
        "layout": {"height": 60 + 40 * len(stages), "margin": {"l": 250, "r": 20, "t": 20, "b": 20}},
    }
    call_counts = [counts.get(s.number, 0) for s in calls]
    beside = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": [s.name for s in calls],
                "x": call_counts,
                "text": [f"{c:,}" for c in call_counts],
                "textposition": "auto",
                "hovertemplate": "%{y}<br>%{x:,} deals<extra></extra>",
                "marker": {"color": "#8fb3d9"},
            }
        ],
        "layout": {
            "height": 60 + 40 * len(stages),
            "margin": {"l": 170, "r": 10, "t": 40, "b": 20},
            "title": {"text": "calls", "font": {"size": 13}},
            "yaxis": {"autorange": "reversed"},
            "xaxis": {"title": {"text": "deals"}},
        },
    }
    columns: tuple[str, ...] = ("step", "name", "deals", "of the step before", "step before")
    columns += ("cohort entered", "to step", "converted", "conversion", "median days")
    kinds = {"of the step before": "percent", "conversion": "percent", "median days": "n", "cohort entered": "n"}
    kinds |= {"converted": "n", "step before": "n", "to step": "n"}
    key = month.strftime("%Y-%m")
    # A month of the picker without a deal of this funnel (another pipeline's month): its zeros, said in words.
    empty = [] if any(counts.values()) else [f"<p class='note'>No deal{esc(of)} reached a step in {key}.</p>"]
    charts: list[str | dict[str, Any]] = [*empty, '<div class="beside"><div class="wide">', funnel, "</div>"]
    if calls:
        charts += ['<div class="narrow">', beside, "</div>"]
    return [*charts, "</div>", table(columns, table_rows, f"funnel-{key}{tag}", kinds)]


def trend_section(ctx: Context, several: list[PipelineFunnel] | None = None) -> Section:
    """Every step over the months; with `several` pipelines, one block per pipeline (the
    pipeline picker shows the one picked, as in the funnel section)."""
    note = (
        "Deals per step and month over the whole build; call steps are in the legend (click to show). "
        "Months without a deal in a step show 0."
    )
    if not several:
        counts: dict[date, dict[Decimal, int]] = {}
        for month, step, count in ctx.con.execute(f"select month, funnel_step, deals_count from {ctx.rel(FUNNEL)}").fetchall():
            counts.setdefault(month, {})[step] = count
        return Section("trend", "Month by month", FUNNEL, note, _trend(ctx, ctx.steps, counts, "trend-table"))
    parts: list[str | dict[str, Any]] = []
    for at, pipeline in enumerate(several):
        parts += per_pipeline(ctx, pipeline.key, _trend(ctx, pipeline.steps, pipeline.counts, f"trend-table-{at + 1}"))
    note = note.replace("over the whole build", "of the pipeline picked, over the whole build")
    return Section("trend", "Month by month", PIPELINE_FUNNEL, note, parts)


def _trend(ctx: Context, steps: list[Step], counts: dict[date, dict[Decimal, int]], table_id: str) -> list[str | dict[str, Any]]:
    def count(month: date, step: Step) -> int:
        return counts.get(month, {}).get(step.number, 0)

    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": step.name,
            "x": [m.isoformat() for m in ctx.months],
            "y": [count(m, step) for m in ctx.months],
            "visible": True if step.is_stage else "legendonly",
        }
        for step in steps
    ]
    figure = {"data": traces, "layout": {"height": 440, "margin": {"t": 20}, "yaxis": {"title": {"text": "deals"}}}}
    columns = ("month", *(f"step {s.number}" for s in steps))
    table_rows = [(m, *(count(m, s) for s in steps)) for m in ctx.months]
    markup = table(columns, table_rows, table_id, scroll=True, marked=ctx.incomplete_row(0))
    return [shade_incomplete(ctx, figure), markup]


def quality_section(ctx: Context, manifest: Manifest, found: records.BuildRecord) -> Section:
    """Every test that did not pass in the build, with its count and one example row."""
    import duckdb

    tests = {t.name: t for t in manifest.tests}
    counts = found.tests
    parts: list[str | dict[str, Any]] = [
        "<p>"
        + " ".join(f'<span class="{s}">{s}={esc(counts.get(s, 0))}</span>' for s in ("PASS", "WARN", "ERROR"))
        + " data tests in the build.</p>"
    ]
    for name, result in found.test_results.items():
        if not result.get("failures") and not result.get("error"):
            continue
        test = tests.get(name)
        status = "ERROR" if result.get("error") or (test is not None and test.severity == "error") else "WARN"
        heading = f'<h3><span class="{status}">{status}</span> {esc(name)}: {n_rows(int(result.get("failures", 0)))}</h3>'
        if test is None:
            parts.append(heading + "<p class='note'>This test is no longer in the project; rebuild to rerun the tests.</p>")
            continue
        about = f"<p class='note'>{esc(test.description)} · model {esc(test.model or '—')} · {esc(test.path.name)}</p>"
        try:
            result_set = ctx.con.execute(f"select * from {checks.failures_of(test)} limit 1")
            columns = [d[0] for d in result_set.description]
            example = result_set.fetchone()
        except duckdb.Error as e:
            parts.append(heading + about + f"<p class='note'>The example could not be read: {esc(first_line(e))}</p>")
            continue
        if example is None:
            parts.append(heading + about + "<p class='note'>No failing row now (the data changed since the build?).</p>")
            continue
        shown = [tuple(shorten(str(v), 200) if isinstance(v, str) else v for v in example)]
        parts.append(heading + about + "<p class='note'>An example row:</p>" + table(columns, shown))
    note = "The data tests that did not pass, each with one failing row (run again now against the build)."
    return Section("quality", "Data quality", "data tests", note, parts)


def provenance_section(found: records.BuildRecord | None, missing: list[str]) -> Section:
    if found is None:
        return Section(
            "provenance",
            "Where the numbers come from",
            "_funnel.build_info",
            "This build records nothing about itself; rebuild it.",
        )
    facts = [
        ("export folder", folder_name(found.raw_data)),
        ("built at", found.built_at),
        ("build took", f"{found.seconds or 0:.2f} s" + (" (full build)" if found.full else " (incremental)")),
        ("funnel version", found.funnel_version),
        ("selection", found.select or "everything"),
        ("report written at", datetime.now(UTC).isoformat(timespec="seconds")),
    ]
    if missing:
        facts.append(("not in this build", ", ".join(missing)))
    sources = [
        (
            name,
            "absent" if fp.get("absent") else folder_name(fp.get("path")),
            found.source_rows.get(name),
            fp.get("size"),
            fp.get("sha256"),
        )
        for name, fp in found.fingerprints.items()
    ]
    markup = "<dl class='facts'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>"
    note = "The export and its fingerprints as the build recorded them."
    parts: list[str | dict[str, Any]] = [markup, table(("source", "file", "rows", "bytes", "sha256"), sources, "sources")]
    return Section("provenance", "Where the numbers come from", "_funnel.build_info", note, parts)


def folder_name(path: Any) -> str:
    """The last part of a path the build recorded: a report names no local folder."""
    return Path(str(path)).name if path else "unknown"
