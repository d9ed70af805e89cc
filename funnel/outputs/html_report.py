"""`funnel report`: the last build as one self-contained HTML file for a manager's inbox.

The month's funnel as a funnel chart, the monthly trend of every step, the analyses models
that the build holds (conversion, cohorts, velocity, owners, lost reasons) as charts and
sortable tables, the data-quality warnings with an example row each, and where the numbers
come from. Charts are plotly's (a dependency, imported only here); plotly.js is embedded
once, so the file opens offline. The numbers are read here, with the same queries as
`funnel show` where one exists (report.show, report.summary); only drawing needs plotly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import names
from funnel.build import record as records
from funnel.engine import database
from funnel.errors import FunnelError, first_line, n_rows, shorten
from funnel.outputs import query as report
from funnel.outputs.html import esc, page, table, write_atomic
from funnel.project import checks
from funnel.quoting import relation

if TYPE_CHECKING:
    import duckdb

    from funnel.project.manifest import Manifest

FUNNEL, STEPS = names.SALES_FUNNEL, names.FUNNEL_STEPS
CONVERSION, COHORTS, VELOCITY = names.STAGE_CONVERSION, names.DEAL_COHORTS, names.STAGE_VELOCITY
OWNERS, LOST_REASONS = names.OWNER_FUNNEL, names.LOST_REASONS
TOP_OWNERS_CHART, TOP_OWNERS_TABLE, TOP_REASONS = 15, 100, 10
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
# A small look of our own: plotly's default template weighs ~10 kB in every figure, and
# plotly.js alone is 4.8 of the report's 5 MB budget.
TEMPLATE = {
    "layout": {
        "colorway": ["#3a6ea5", "#e07b39", "#4e9f50", "#c2413b", "#8c6bb1", "#7f7f7f"]
        + ["#bcbd22", "#17becf", "#d4a017", "#e377c2", "#5a3e1b"],
        "font": {"family": "system-ui, sans-serif", "size": 12, "color": "#1f2933"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "#f7f9fb",
        "xaxis": {"gridcolor": "#e4e7eb", "zerolinecolor": "#cbd2d9"},
        "yaxis": {"gridcolor": "#e4e7eb", "zerolinecolor": "#cbd2d9"},
        "hoverlabel": {"align": "left"},
    }
}


@dataclass
class Section:
    """One part of the page: a heading, a sentence saying what it shows, charts, tables."""

    anchor: str
    title: str
    note: str
    figures: list[dict[str, Any]] = field(default_factory=list)  # plotly figures as dicts
    html: list[str] = field(default_factory=list)  # tables and other markup, escaped


def write_report(manifest: Manifest, month: str | None, out: Path) -> Path:
    """Write the report of `manifest.env`'s last build (month YYYY-MM; default the latest)."""
    draw = _plotly_to_html()  # fail before reading anything when plotly is missing
    sections, title, facts = collect(manifest, month)
    return write_atomic(out, render(sections, title, facts, draw))


def collect(manifest: Manifest, month: str | None) -> tuple[list[Section], str, list[tuple[str, str]]]:
    """Everything the page shows, read from the build: sections, the title, header facts."""
    env = manifest.env
    with database.read(env) as con:
        present = {
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = ?", [env.schema]
            ).fetchall()
        }
        if FUNNEL not in present:
            raise FunnelError(f"the build of env '{env.name}' has no {FUNNEL}; run funnel build --env {env.name}.")
        found = records.read(con)
        if month is None:
            row = con.execute(f"select strftime(max(month), '%Y-%m') from {relation(env.schema, FUNNEL)}").fetchone()
            latest = row[0] if row else None
            if latest is None:
                raise FunnelError(f"{FUNNEL} in env '{env.name}' has no rows to report; check the export and rebuild.")
            month = str(latest)
        funnel_rows = report.show(env, FUNNEL, month).rows  # says which months exist when `month` has no rows
        first_day = report.check_month(month)
        steps = _steps(con, env.schema, present)
        sections = [_funnel_section(env, month, funnel_rows, steps, present), _trend_section(con, env.schema, steps)]
        sections += [make(con, env.schema, month, first_day) for name, make in ANALYSES if name in present]
        missing = [name for name, _ in ANALYSES if name not in present]
        sections.append(_quality_section(con, manifest, found or records.BuildRecord()))
    sections.append(_provenance_section(found, missing))
    facts = [
        ("env", env.name),
        ("month", month),
        ("built", (found and found.built_at) or "unknown"),
        ("export", (found and found.raw_data) or "unknown"),
    ]
    return sections, f"Sales funnel · {env.name} · {month}", facts


def _steps(con: duckdb.DuckDBPyConnection, schema: str, present: set[str]) -> list[tuple[Decimal, str]]:
    """Every step of the funnel in order: from the seed, else from the report itself."""
    source = STEPS if STEPS in present else FUNNEL
    return [
        (s, n)
        for s, n in con.execute(f"select distinct funnel_step, kpi_name from {relation(schema, source)} order by 1").fetchall()
    ]


def _previous_step(step: Decimal, steps: list[Decimal]) -> Decimal | None:
    """The step a step's deals are compared with: the previous whole step for stage steps
    (3 after 2, skipping the call step 2.1), the step a call step hangs from (2.1 -> 2)."""
    whole = [s for s in steps if s == s.to_integral_value()]
    if step != step.to_integral_value():
        base = next((s for s in whole if s == step.to_integral_value(rounding="ROUND_FLOOR")), None)
        return base
    earlier = [s for s in whole if s < step]
    return earlier[-1] if earlier else None


def _funnel_section(
    env: Any, month: str, rows: list[tuple[Any, ...]], steps: list[tuple[Decimal, str]], present: set[str]
) -> Section:
    counts = {row[2]: row[3] for row in rows}
    numbers = [s for s, _ in steps]
    stage_detail: dict[Decimal, tuple[Any, ...]] = {}
    if {CONVERSION, VELOCITY, LOST_REASONS, STEPS} <= present:
        for step, _, entered, to_step, converted, rate, median_days in report.summary(env, month).stages.rows:
            stage_detail[step] = (entered, to_step, converted, rate, median_days)
    table_rows, texts = [], []
    for step, name in steps:
        count = counts.get(step, 0)
        base = _previous_step(step, numbers)
        share = count / counts[base] if base is not None and counts.get(base) else None
        texts.append(f"{count:,}" + (f" · {100 * share:.1f} % of step {base}" if share is not None else ""))
        detail = stage_detail.get(step, (None,) * 5)
        table_rows.append((step, name, count, share, str(base) if base is not None else None, *detail))
    figure = {
        "data": [
            {
                "type": "funnel",
                "y": [name for _, name in steps],
                "x": [counts.get(s, 0) for s in numbers],
                "text": texts,
                "textinfo": "text",
                "hovertemplate": "%{y}<br>%{x:,} deals<extra></extra>",
                "marker": {"color": ["#3a6ea5" if s == s.to_integral_value() else "#8fb3d9" for s in numbers]},
            }
        ],
        "layout": {"height": 460, "margin": {"l": 260, "r": 30, "t": 20, "b": 30}},
    }
    columns: tuple[str, ...] = ("funnel_step", "kpi_name", "deals_count", "of previous step", "previous step")
    columns += ("cohort entered", "to_step", "converted", "conversion_rate", "median_days")
    kinds = {
        "of previous step": "percent",
        "conversion_rate": "percent",
        "median_days": "n",
        "cohort entered": "n",
        "converted": "n",
    }
    note = (
        f"Deals per step in {month} (rep_sales_funnel_monthly); each bar says what share it is of the previous step in the "
        "same month (a call step: of the step it follows). The cohort columns follow the deals that first entered a stage "
        "step this month to the next stage step (rep_stage_conversion); median days in the step over the whole build "
        "(rep_stage_velocity)."
    )
    return Section("funnel", f"Funnel · {month}", note, [figure], [table(columns, table_rows, "funnel-table", kinds)])


def _trend_section(con: duckdb.DuckDBPyConnection, schema: str, steps: list[tuple[Decimal, str]]) -> Section:
    rows = con.execute(
        f"select month, funnel_step, deals_count from {relation(schema, FUNNEL)} order by month, funnel_step"
    ).fetchall()
    months = sorted({m for m, _, _ in rows})
    counts = {(m, s): c for m, s, c in rows}
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": [m.isoformat() for m in months],
            "y": [counts.get((m, step), 0) for m in months],
            "visible": True if step == step.to_integral_value() else "legendonly",
        }
        for step, name in steps
    ]
    figure = {"data": traces, "layout": {"height": 440, "margin": {"t": 20}, "yaxis": {"title": {"text": "deals"}}}}
    columns = ("month", *(f"step {s}" for s, _ in steps))
    table_rows = [(m, *(counts.get((m, s), 0) for s, _ in steps)) for m in months]
    note = (
        "Deals per step and month over the whole build; call steps are in the legend (click to show). "
        "Months without a deal in a step show 0."
    )
    return Section("trend", "Monthly trend", note, [figure], [table(columns, table_rows, "trend-table", scroll=True)])


def _all_rows(
    con: duckdb.DuckDBPyConnection, schema: str, model: str, order: str
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    result = con.execute(f"select * from {relation(schema, model)} order by {order}")
    return tuple(d[0] for d in result.description), result.fetchall()


def _conversion_section(con: duckdb.DuckDBPyConnection, schema: str, month: str, first_day: str) -> Section:
    columns, rows = _all_rows(con, schema, CONVERSION, "cohort_month, from_step")
    pairs = sorted({(r[1], r[2]) for r in rows})
    months = sorted({r[0] for r in rows})
    by_key = {(r[0], r[1], r[2]): r for r in rows}
    z = [[_rate(by_key.get((m, a, b))) for a, b in pairs] for m in months]
    text = [[_fraction(by_key.get((m, a, b))) for a, b in pairs] for m in months]
    figure = _heatmap([f"{a} → {b}" for a, b in pairs], [m.isoformat() for m in months], z, text, "conversion")
    note = (
        "Of the deals that first entered from_step in cohort_month, the share that later entered to_step "
        "(rep_stage_conversion). Each cell: converted / entered."
    )
    kinds = {"conversion_rate": "percent"}
    return Section(CONVERSION, "Stage conversion", note, [figure], [table(columns, rows, CONVERSION, kinds, scroll=True)])


def _cohorts_section(con: duckdb.DuckDBPyConnection, schema: str, month: str, first_day: str) -> Section:
    columns, rows = _all_rows(con, schema, COHORTS, "cohort_month, funnel_step")
    steps = sorted({(r[1], r[2]) for r in rows})
    months = sorted({r[0] for r in rows})
    by_key = {(r[0], r[1]): r for r in rows}
    z = [[_value(by_key.get((m, s)), 5) for s, _ in steps] for m in months]
    text = [[_counts(by_key.get((m, s)), 4, 3) for s, _ in steps] for m in months]
    figure = _heatmap([f"step {s}" for s, _ in steps], [m.isoformat() for m in months], z, text, "reached")
    note = (
        "Of the deals created in each month, the share that ever reached each step (rep_deal_cohorts). "
        "Each cell: reached / cohort deals."
    )
    kinds = {"reached_share": "percent"}
    return Section(COHORTS, "Deal cohorts", note, [figure], [table(columns, rows, COHORTS, kinds, scroll=True)])


def _velocity_section(con: duckdb.DuckDBPyConnection, schema: str, month: str, first_day: str) -> Section:
    columns, rows = _all_rows(con, schema, VELOCITY, "funnel_step")
    names = [r[1] for r in rows]
    figure = {
        "data": [
            {"type": "bar", "name": "median days", "x": names, "y": [r[4] for r in rows]},
            {"type": "bar", "name": "75th percentile", "x": names, "y": [r[5] for r in rows]},
            {"type": "scatter", "mode": "markers", "name": "average", "x": names, "y": [r[6] for r in rows]},
        ],
        "layout": {"height": 420, "barmode": "group", "margin": {"t": 20, "b": 140}, "yaxis": {"title": {"text": "days"}}},
    }
    note = (
        "Days from a deal's first entry into a stage step to its next entry into another stage, "
        "over the whole build (rep_stage_velocity)."
    )
    kinds = {"median_days": "n", "p75_days": "n", "avg_days": "n"}
    return Section(VELOCITY, "Days in stage", note, [figure], [table(columns, rows, VELOCITY, kinds)])


def _owners_section(con: duckdb.DuckDBPyConnection, schema: str, month: str, first_day: str) -> Section:
    rows = con.execute(
        f"select owner_id, owner_name, funnel_step, deals_count from {relation(schema, OWNERS)} where month = ?::date",
        [first_day],
    ).fetchall()
    steps = sorted({r[2] for r in rows})
    owners: dict[tuple[Any, Any], dict[Decimal, int]] = {}
    for owner_id, owner_name, step, count in rows:
        owners.setdefault((owner_id, owner_name), {})[step] = count
    ranked = sorted(
        owners.items(), key=lambda item: (-item[1].get(steps[0], 0) if steps else 0, -sum(item[1].values()), str(item[0]))
    )

    def label(key: tuple[Any, Any]) -> str:
        owner_id, owner_name = key
        return "(no owner)" if owner_id is None else f"{owner_name or 'user'} ({owner_id})"

    top = ranked[:TOP_OWNERS_CHART]
    figure = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "name": f"step {s}",
                "y": [label(k) for k, _ in top],
                "x": [c.get(s, 0) for _, c in top],
            }
            for s in steps
        ],
        "layout": {
            "height": 140 + 26 * len(top),
            "barmode": "stack",
            "margin": {"l": 220, "t": 20},
            "yaxis": {"autorange": "reversed"},
            "xaxis": {"title": {"text": "deals"}},
        },
    }
    columns = ("owner_id", "owner_name", *(f"step {s}" for s in steps))
    table_rows = [(k[0], k[1], *(c.get(s) for s in steps)) for k, c in ranked[:TOP_OWNERS_TABLE]]
    cut = len(ranked) - TOP_OWNERS_TABLE
    more = f" {cut:,} more owners are not listed: funnel show --model {OWNERS} --month {month} has them all." if cut > 0 else ""
    note = (
        f"Deals per owner and step in {month} (rep_owner_funnel_monthly): stage steps credit the deal's owner at the "
        f"first entry, call steps the user the call was assigned to. The {TOP_OWNERS_CHART} owners with the most step "
        f"{steps[0] if steps else 1} deals are charted.{more}"
    )
    if not rows:
        return Section(OWNERS, f"Owners · {month}", f"No owner rows in {month}.")
    kinds = {f"step {s}": "n" for s in steps}
    return Section(OWNERS, f"Owners · {month}", note, [figure], [table(columns, table_rows, OWNERS, kinds, scroll=True)])


def _lost_section(con: duckdb.DuckDBPyConnection, schema: str, month: str, first_day: str) -> Section:
    label = "coalesce(lost_reason, 'reason ' || lost_reason_id || ' (no label)')"
    by_month = con.execute(
        f"select month, {label} as reason, sum(deals_count)::bigint "
        f"from {relation(schema, LOST_REASONS)} group by all order by 1, 2"
    ).fetchall()
    totals: dict[str, int] = {}
    for _, reason, count in by_month:
        totals[reason] = totals.get(reason, 0) + count
    top = sorted(totals, key=lambda r: (-totals[r], r))[:TOP_REASONS]
    months = sorted({m for m, _, _ in by_month})
    grouped: dict[tuple[Any, str], int] = {}
    for m, reason, count in by_month:
        key = (m, reason if reason in top else "other reasons")
        grouped[key] = grouped.get(key, 0) + count
    shown = top + (["other reasons"] if len(totals) > len(top) else [])
    figure = {
        "data": [
            {"type": "bar", "name": r, "x": [m.isoformat() for m in months], "y": [grouped.get((m, r), 0) for m in months]}
            for r in shown
        ],
        "layout": {"height": 420, "barmode": "stack", "margin": {"t": 20}, "yaxis": {"title": {"text": "lost deals"}}},
    }
    result = con.execute(
        f"select * from {relation(schema, LOST_REASONS)} where month = ?::date "
        "order by deals_count desc, lost_reason_id, last_funnel_step",
        [first_day],
    )
    columns, rows = tuple(d[0] for d in result.description), result.fetchall()
    note = (
        f"Lost deals per month and reason over the whole build (the {TOP_REASONS} most frequent reasons), then {month}'s "
        "rows with the step each deal was lost at (rep_lost_reasons_monthly)."
    )
    html = [
        table(columns, rows, LOST_REASONS, {"last_funnel_step": "n"})
        if rows
        else f"<p class='note'>No deals lost in {esc(month)}.</p>"
    ]
    return Section(LOST_REASONS, "Lost reasons", note, [figure] if by_month else [], html)


ANALYSES: tuple[tuple[str, Callable[..., Section]], ...] = (
    (CONVERSION, _conversion_section),
    (COHORTS, _cohorts_section),
    (VELOCITY, _velocity_section),
    (OWNERS, _owners_section),
    (LOST_REASONS, _lost_section),
)


def _heatmap(x: list[str], y: list[str], z: list[list[Any]], text: list[list[str]], what: str) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "heatmap",
                "x": x,
                "y": y,
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "hovertemplate": f"%{{y}} · %{{x}}<br>{what} %{{z:.1%}} (%{{text}})<extra></extra>",
                "colorscale": "Blues",
                "zmin": 0,
                "zmax": 1,
                "colorbar": {"tickformat": ".0%"},
            }
        ],
        "layout": {
            "height": 160 + 24 * len(y),
            "margin": {"t": 20, "l": 100},
            "yaxis": {"autorange": "reversed", "type": "category"},
        },
    }


def _rate(row: tuple[Any, ...] | None) -> float | None:
    return None if row is None else row[5]


def _value(row: tuple[Any, ...] | None, index: int) -> float | None:
    return None if row is None else row[index]


def _fraction(row: tuple[Any, ...] | None) -> str:
    return "" if row is None else f"{row[4]:,}/{row[3]:,}"


def _counts(row: tuple[Any, ...] | None, part: int, whole: int) -> str:
    return "" if row is None else f"{row[part]:,}/{row[whole]:,}"


def _quality_section(con: duckdb.DuckDBPyConnection, manifest: Manifest, found: records.BuildRecord) -> Section:
    """Every test that did not pass in the build, with its count and one example row."""
    import duckdb

    recorded = found.test_results
    tests = {t.name: t for t in manifest.tests}
    counts = found.tests
    parts = [
        "<p>"
        + " ".join(f'<span class="{s}">{s}={esc(counts.get(s, 0))}</span>' for s in ("PASS", "WARN", "ERROR"))
        + " data tests in the build.</p>"
    ]
    for name, result in recorded.items():
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
            result_set = con.execute(f"select * from {checks.failures_of(test)} limit 1")
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
    return Section(
        "quality",
        "Data quality",
        "The data tests that did not pass, each with one failing row (run again now against the build).",
        html=parts,
    )


def _provenance_section(found: records.BuildRecord | None, missing: list[str]) -> Section:
    if found is None:
        return Section("provenance", "Provenance", "This build records nothing about itself (_funnel.build_info); rebuild it.")
    facts = [
        ("export folder", found.raw_data),
        ("built at", found.built_at),
        ("build took", f"{found.seconds or 0:.2f} s" + (" (full build)" if found.full else " (incremental)")),
        ("funnel version", found.funnel_version),
        ("selection", found.select or "everything"),
        ("report written at", datetime.now(UTC).isoformat(timespec="seconds")),
    ]
    if missing:
        facts.append(("not in this build", ", ".join(missing)))
    rows_by_source = found.source_rows
    sources = [
        (name, fp.get("path"), rows_by_source.get(name), fp.get("size"), fp.get("sha256"))
        for name, fp in found.fingerprints.items()
    ]
    markup = "<dl class='facts'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>"
    columns = ("source", "file", "rows", "bytes", "sha256")
    return Section(
        "provenance",
        "Provenance",
        "Where these numbers come from: the export and its fingerprints as the build recorded them.",
        html=[markup, table(columns, sources, "sources")],
    )


def render(sections: list[Section], title: str, facts: list[tuple[str, str]], draw: Callable[..., str]) -> str:
    """The page: header, a link per section, then the sections; plotly.js goes in once."""
    nav = "<nav>" + "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections) + "</nav>"
    header = f"<h1>{esc(title)}</h1><p class='note'>" + " · ".join(f"{esc(k)} {esc(v)}" for k, v in facts) + "</p>"
    parts = [header, nav]
    first = True
    for section in sections:
        parts.append(f'<section id="{esc(section.anchor)}"><h2>{esc(section.title)}</h2><p class="note">{esc(section.note)}</p>')
        for number, figure in enumerate(section.figures):
            parts.append(draw(figure, include_plotlyjs=first, div_id=f"chart-{section.anchor}-{number}"))
            first = False
        parts.extend(section.html)
        parts.append("</section>")
    return page(title, "\n".join(parts))


def chart_text(figure: dict[str, Any]) -> dict[str, Any]:
    """`figure` with every string of its traces (names, labels, categories, texts) as plotly text.

    plotly.js draws every text it is given as a small HTML subset: `<a href>` is a live
    link, `<b>`, `<br>` and `style` are rendered, and entities are decoded (svg_text_utils,
    plotly.js 4: the text is split at tags first, then each piece between tags has
    `&lt;` `&gt;` `&amp;` and numeric entities decoded, once). An owner named `<b>Bo</b>`
    would show as a bold "Bo". So `&`, `<` and `>` are written as entities, and plotly
    shows the name as it is, in the legend, the axes, the bars and the hover labels alike.
    Traces hold the export's text; only their `*template` keys (hovertemplate,
    texttemplate) are ours and stay markup: the values they insert are escaped here.
    Layout text (axis titles) is this module's own and is not escaped: export text put
    there must go through `plotly_text` first.
    """
    traces = [{k: v if k.endswith("template") else plotly_text(v) for k, v in t.items()} for t in figure["data"]]
    return {**figure, "data": traces}


def plotly_text(value: Any) -> Any:
    """A string (or the strings in a list or dict) with `&`, `<` and `>` as entities: plotly text."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, list | tuple):
        return [plotly_text(v) for v in value]
    if isinstance(value, dict):
        return {k: plotly_text(v) for k, v in value.items()}
    return value


def _plotly_to_html() -> Callable[..., str]:
    """plotly's figure-to-div function, or a one-line error saying how to install it."""
    try:
        import plotly.io as pio
    except ImportError:
        raise FunnelError(
            "funnel report draws its charts with plotly, which is not installed; "
            "pip install pipedrive-funnel again, or pip install plotly."
        ) from None

    def draw(figure: dict[str, Any], include_plotlyjs: bool, div_id: str) -> str:
        return str(
            pio.to_html(
                {**chart_text(figure), "layout": {"template": TEMPLATE, **figure["layout"]}},
                include_plotlyjs=include_plotlyjs,
                full_html=False,
                div_id=div_id,
                config=PLOT_CONFIG,
                default_width="100%",
                validate=True,
            )
        )

    return draw
