"""`funnel report`: the last build as one self-contained HTML file for a manager's inbox.

One file holds every month: a month picker (and a pipeline picker, where the deal models
name several pipelines) shows one month's funnel, owners, lost deals and open pipeline;
the page opens on the latest complete month (the last that ends before the export's latest
change) and marks the later, incomplete months in every chart and table. Then the months
side by side, win rate, won value, sales cycle, the analyses the build holds, the
data-quality warnings with an example row each, and where the numbers come from.

The sections are in funnel/outputs/report_sections.py (the funnel's) and
funnel/outputs/report_deals.py (outcomes and money). Charts are plotly's (a dependency,
imported only here); plotly.js is embedded once, so the file opens offline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.build import record as records
from funnel.engine import database
from funnel.errors import FunnelError
from funnel.outputs import manager
from funnel.outputs import query as report
from funnel.outputs.html import esc, page, write_atomic
from funnel.outputs.report_analyses import ANALYSES
from funnel.outputs.report_deals import deal_sections, pipelines
from funnel.outputs.report_sections import (
    FUNNEL,
    PIPELINE_FUNNEL,
    Context,
    Section,
    folder_name,
    funnel_section,
    opened_pipeline,
    pipeline_funnels,
    pipeline_key,
    pipeline_label,
    provenance_section,
    quality_section,
    read_steps,
    trend_section,
)
from funnel.quoting import relation

if TYPE_CHECKING:
    from funnel.project.manifest import Manifest

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


# Show the blocks of the month (and pipeline) picked, and draw the charts that show: each
# chart's figure waits in a JSON script beside its div until it is first seen (a page of
# 20 months would otherwise draw some 80 charts before it answers); a chart seen before is
# resized, in case the window changed while it was hidden.
PAGE_SCRIPT = """
(function () {
  var config = %s;
  function draw() {
    document.querySelectorAll("div.chart").forEach(function (d) {
      if (d.offsetParent === null) { return; }
      if (d.dataset.drawn) { window.Plotly.Plots.resize(d); return; }
      var figure = JSON.parse(document.getElementById(d.id + "-figure").textContent);
      d.dataset.drawn = "yes";
      window.Plotly.newPlot(d, figure.data, figure.layout, config);
    });
  }
  var month = document.getElementById("month-picker"), pipeline = document.getElementById("pipeline-picker");
  function show() {
    document.querySelectorAll(".per-month").forEach(function (b) { b.hidden = b.dataset.month !== month.value; });
    if (pipeline) {
      document.querySelectorAll(".per-pipeline").forEach(function (b) { b.hidden = b.dataset.pipeline !== pipeline.value; });
    }
    draw();
  }
  month.addEventListener("change", show);
  if (pipeline) { pipeline.addEventListener("change", show); }
  draw();
})();
"""


@dataclass(frozen=True)
class Page:
    sections: list[Section]
    title: str
    facts: list[tuple[str, str]]
    months: list[tuple[str, str]]  # (YYYY-MM, label) for the month picker
    opened: str
    pipelines: list[tuple[str, str]]  # (key, label) for the pipeline picker; [] for one pipeline
    pipeline: str  # the key of the pipeline the picker opens on


def write_report(manifest: Manifest, month: str | None, out: Path) -> Path:
    """Write the report of `manifest.env`'s last build, opening on `month` (YYYY-MM;
    default: the latest complete month)."""
    draw = _plotly_to_html()  # fail before reading anything when plotly is missing
    return write_atomic(out, render(collect(manifest, month), draw))


def collect(manifest: Manifest, month: str | None) -> Page:
    """Everything the page shows, read from the build."""
    env = manifest.env
    with database.read(env) as con:
        present = set(database.table_columns(con, env.schema))
        if FUNNEL not in present:
            raise FunnelError(f"the build of env '{env.name}' has no {FUNNEL}; run funnel build --env {env.name}.")
        found = records.read(con)
        months, counted_in = _months(con, env.schema, present)
        if not months:
            raise FunnelError(f"{FUNNEL} in env '{env.name}' has no rows to report; check the export and rebuild.")
        if month is not None and date.fromisoformat(report.check_month(month)) not in months:
            report.show(env, counted_in, month)  # says which months exist
        complete = report.latest_complete_month(con, env.schema, found) if "stg_deal_changes" in present else None
        incomplete = {m for m in months if complete is not None and m.strftime("%Y-%m") > complete}
        done = [m for m in months if m not in incomplete]
        opened = date.fromisoformat(report.check_month(month)) if month else (done or months)[-1]
        steps = read_steps(con, env.schema, present, report.counted_pipeline(con))
        ctx = Context(con, env.schema, months, incomplete, opened, steps, present, found)
        shown = pipelines(ctx)
        several = pipeline_funnels(ctx, [(pipeline_key(p), p) for p in shown])
        ctx.pipeline = opened_pipeline(shown, several, opened) if len(shown) > 1 else ""
        sections = [funnel_section(ctx, several), trend_section(ctx, several)]
        sections += deal_sections(ctx, manager.deals_absent(found))
        analyses = [make(ctx) for name, make in ANALYSES if name in present]
        counted = next((p.name for p in several if p.analysed), None)
        for section in analyses if counted else []:  # the picker does not switch these: say whose they are
            section.note += (
                f" Counted for the pipeline {counted} only, whatever the pipeline picker shows "
                "(funnel build --var 'pipeline=NAME' counts another)."
            )
        sections += analyses
        missing = [name for name in (*manager.DEAL_MODELS, *(n for n, _ in ANALYSES)) if name not in present]
        sections.append(quality_section(ctx, manifest, found or records.BuildRecord()))
    sections.append(provenance_section(found, missing))
    facts = [
        ("export", folder_name(found.raw_data if found else None)),
        ("built", (found and found.built_at) or "unknown"),
        ("env", env.name),
    ]
    if complete is not None:
        facts.append(("latest complete month", complete))
    return Page(
        sections,
        f"Sales funnel · {env.name}",
        facts,
        [(m.strftime("%Y-%m"), ctx.label(m)) for m in months],
        opened.strftime("%Y-%m"),
        [(pipeline_key(p), pipeline_label(p)) for p in shown] if len(shown) > 1 else [],
        ctx.pipeline,
    )


def _months(con: Any, schema: str, present: set[str]) -> tuple[list[date], str]:
    """Every month of the report, first days in order, and the model to name when a month
    is not one of them. The months are every pipeline's: a month only another pipeline than
    FUNNEL's has deals in is in the picker too, and that pipeline shows its funnel there."""
    funnel = [m for (m,) in con.execute(f"select distinct month from {relation(schema, FUNNEL)} order by 1").fetchall()]
    if PIPELINE_FUNNEL not in present:
        return funnel, FUNNEL
    every = con.execute(
        f"select month from {relation(schema, FUNNEL)} union select month from {relation(schema, PIPELINE_FUNNEL)} order by 1"
    ).fetchall()
    months = [m for (m,) in every]
    return months, FUNNEL if months == funnel else PIPELINE_FUNNEL


def render(report_page: Page, draw: Callable[..., str]) -> str:
    """The page: header and pickers, a link per section, then the sections; plotly.js goes in once."""
    nav = "<nav>" + "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in report_page.sections) + "</nav>"
    facts = " · ".join(f"{esc(k)} {esc(v)}" for k, v in report_page.facts)
    options = "".join(
        f'<option value="{esc(key)}"{" selected" if key == report_page.opened else ""}>{esc(label)}</option>'
        for key, label in report_page.months
    )
    pickers = f'<label>Month <select id="month-picker">{options}</select></label>'
    if report_page.pipelines:
        choices = "".join(
            f'<option value="{esc(key)}"{" selected" if key == report_page.pipeline else ""}>{esc(label)}</option>'
            for key, label in report_page.pipelines
        )
        pickers += f'<label>Pipeline <select id="pipeline-picker">{choices}</select></label>'
    parts = [f"<h1>{esc(report_page.title)}</h1><p class='note'>{facts}</p>", f"<div class='pickers'>{pickers}</div>", nav]
    first = True
    for section in report_page.sections:
        caption = f'<span class="caption">{esc(section.model)}</span>'
        parts.append(
            f'<section id="{esc(section.anchor)}"><h2>{esc(section.title)}{caption}</h2><p class="note">{esc(section.note)}</p>'
        )
        number = 0
        for part in section.parts:
            if isinstance(part, str):
                parts.append(part)
                continue
            parts.append(draw(part, include_plotlyjs=first, div_id=f"chart-{section.anchor}-{number}"))
            first = False
            number += 1
        parts.append("</section>")
    parts.append(f"<script>{PAGE_SCRIPT % json.dumps(PLOT_CONFIG)}</script>")
    return page(report_page.title, "\n".join(parts))


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
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise FunnelError(
            "funnel report draws its charts with plotly, which is not installed; "
            "pip install pipedrive-funnel again, or pip install plotly."
        ) from None

    def draw(figure: dict[str, Any], include_plotlyjs: bool, div_id: str) -> str:
        """The chart's div and its figure as JSON (PAGE_SCRIPT draws it when it shows);
        plotly.js before it when `include_plotlyjs`. plotly validates the figure here."""
        shown = {**chart_text(figure), "layout": {"template": TEMPLATE, **figure["layout"]}}
        # "<" only occurs inside JSON strings, where \\u003c is the same text: no "</script>".
        data = pio.to_json(shown, validate=True).replace("<", "\\u003c")
        script = f"<script>{get_plotlyjs()}</script>\n" if include_plotlyjs else ""
        height = int(figure["layout"].get("height", 450))
        return (
            f'{script}<div id="{div_id}" class="plotly-graph-div chart" style="height:{height}px; width:100%;"></div>'
            f'<script type="application/json" id="{div_id}-figure">{data}</script>'
        )

    return draw
