"""The sections of `funnel report` about outcomes and money, from the four deal models: how
many deals we win (by the month they were added), what we won (per month and currency),
what is in the pipeline at a month's end (by step, open and weighted), how long a deal
takes. Money is never summed across currencies: each currency is a trace of its own.

With several pipelines, each section holds one block per pipeline and the page's pipeline
picker shows one of them; the open pipeline is also one block per month (the month picker).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from funnel import names
from funnel.outputs.html import esc, table
from funnel.outputs.manager import NO_DEALS, OPEN_PIPELINE, SALES_CYCLE, WIN_RATE, WON_VALUE
from funnel.outputs.report_sections import (
    Context,
    Section,
    days_figure,
    per_month,
    per_pipeline,
    pipeline_key,
    shade_incomplete,
)

Parts = list[str | dict[str, Any]]
MONEY = {"won_value": "n", "avg_won_value": "n", "open_value": "n", "weighted_value": "n"}


def pipelines(ctx: Context) -> list[str | None]:
    """The pipelines the deal models name, the one with the most deals first, then those only
    the funnel names (rep_pipeline_funnel_monthly, e.g. a build without deals.csv); [None]
    for one unnamed pipeline (no picker then). The var pipeline, which the analyses count,
    comes first of all: the page then opens on one pipeline everywhere."""
    found: list[str | None] = []
    if WIN_RATE in ctx.present:
        rows = ctx.con.execute(
            f"select pipeline, sum(deals) from {ctx.rel(WIN_RATE)} group by all order by 2 desc, 1 nulls last"
        ).fetchall()
        found = [p for p, _ in rows]
    if names.PIPELINE_FUNNEL in ctx.present:
        rows = ctx.con.execute(
            f"select distinct pipeline from {ctx.rel(names.PIPELINE_FUNNEL)} where pipeline is not null order by 1"
        ).fetchall()
        found += [p for (p,) in rows if p not in found]
    counted = ctx.found.vars.get("pipeline") if ctx.found else None
    return sorted(found, key=lambda p: p != counted) if counted in found else found


def deal_sections(ctx: Context, absent: bool) -> list[Section]:
    """The four sections, those whose model the build holds, in a manager's order."""
    makers: tuple[tuple[str, str, str, Callable[[Context, str | None, str], Parts]], ...] = (
        (WIN_RATE, "How many deals we win", _WIN_NOTE, _win_rate),
        (WON_VALUE, "What we won", _WON_NOTE, _won_value),
        (OPEN_PIPELINE, "What is in the pipeline", _OPEN_NOTE, _open_pipeline),
        (SALES_CYCLE, "How long a deal takes", _CYCLE_NOTE, _sales_cycle),
    )
    shown = pipelines(ctx)
    sections = []
    for model, title, note, make in makers:
        if model not in ctx.present:
            continue
        section = Section(model, title, model, note)
        if absent:
            section.parts.append(f"<p class='note'>{esc(NO_DEALS)}.</p>")
        elif len(shown) <= 1:
            section.parts += make(ctx, shown[0] if shown else None, "")
        else:
            for at, pipeline in enumerate(shown):
                section.parts += per_pipeline(ctx, pipeline_key(pipeline), make(ctx, pipeline, f"-{at + 1}"))
        sections.append(section)
    return sections


_WIN_NOTE = (
    "Deals by the month they were added and where they stand now: won, lost, still open. Win rate = won / (won + lost); "
    "recent months still have open deals, so their rate may change."
)
_WON_NOTE = "Deals won per month (by the day they were won) and their value, per currency."
_OPEN_NOTE = (
    "Deals open at the month's last instant, by the step of their stage then: their value, and weighted by the deal's "
    "probability (else the stage's, else 100 %), per currency."
)
_CYCLE_NOTE = "Days from a deal being added to being won or lost, over every closed deal of the build."


def _rows(ctx: Context, sql: str, pipeline: str | None, params: list[Any] | None = None) -> tuple[tuple[str, ...], list[Any]]:
    result = ctx.con.execute(sql.format(where="pipeline is not distinct from ?"), [*(params or []), pipeline])
    return tuple(d[0] for d in result.description), result.fetchall()


def _win_rate(ctx: Context, pipeline: str | None, tag: str) -> Parts:
    columns, rows = _rows(
        ctx,
        f"select cohort_month, deals, won, lost, open, win_rate from {ctx.rel(WIN_RATE)} where {{where}} order by 1",
        pipeline,
    )
    if not rows:
        return ["<p class='note'>No deals in deals.csv.</p>"]
    x = [m.isoformat() for m, *_ in rows]
    bars = [
        {"type": "bar", "name": name, "x": x, "y": [r[i] for r in rows], "marker": {"color": color}}
        for name, i, color in (("won", 2, "#4e9f50"), ("lost", 3, "#c2413b"), ("open", 4, "#bcc5cf"))
    ]
    rate = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "win rate",
        "x": x,
        "y": [r[5] for r in rows],
        "yaxis": "y2",
        "line": {"color": "#1f2933"},
        "hovertemplate": "%{x|%Y-%m}<br>win rate %{y:.1%}<extra></extra>",
    }
    figure = {
        "data": [*bars, rate],
        "layout": {
            "height": 420,
            "barmode": "stack",
            "margin": {"t": 20},
            "yaxis": {"title": {"text": "deals added"}},
            "yaxis2": {"overlaying": "y", "side": "right", "range": [0, 1], "tickformat": ".0%", "showgrid": False},
            "legend": {"orientation": "h"},
        },
    }
    kinds = {"win_rate": "percent"}
    return [shade_incomplete(ctx, figure), table(columns, rows, f"win{tag}", kinds, True, ctx.incomplete_row(0))]


def _won_value(ctx: Context, pipeline: str | None, tag: str) -> Parts:
    columns, rows = _rows(
        ctx,
        f"select month, currency, won_deals, won_value, avg_won_value from {ctx.rel(WON_VALUE)} where {{where}} order by 1, 2",
        pipeline,
    )
    if not rows:
        return ["<p class='note'>No deals won.</p>"]
    currencies = sorted({r[1] for r in rows})
    months = sorted({r[0] for r in rows})
    value = {(r[0], r[1]): r[3] for r in rows}
    figure = {
        "data": [
            {
                "type": "bar",
                "name": currency,
                "x": [m.isoformat() for m in months],
                "y": [value.get((m, currency)) for m in months],
                "hovertemplate": f"%{{x|%Y-%m}}<br>%{{y:,.2f}} {esc(currency)}<extra></extra>",
            }
            for currency in currencies
        ],
        "layout": {"height": 400, "barmode": "group", "margin": {"t": 20}, "yaxis": {"title": {"text": "won value"}}},
    }
    markup = table(columns, rows, f"won{tag}", MONEY, scroll=True, marked=ctx.incomplete_row(0))
    return [shade_incomplete(ctx, figure), markup]


def _open_pipeline(ctx: Context, pipeline: str | None, tag: str) -> Parts:
    columns, rows = _rows(
        ctx,
        f"select month_end, funnel_step, kpi_name, currency, open_deals, open_value, weighted_value "
        f"from {ctx.rel(OPEN_PIPELINE)} where {{where}} order by 1, 2 nulls last, 4",
        pipeline,
    )
    by_month: dict[date, list[Any]] = {}
    for row in rows:
        by_month.setdefault(row[0].replace(day=1), []).append(row)
    parts: Parts = []
    for month in ctx.months:
        parts += per_month(ctx, month, _open_month(columns, by_month.get(month, []), month, tag))
    return parts


def _open_month(columns: tuple[str, ...], rows: list[Any], month: date, tag: str) -> Parts:
    key = month.strftime("%Y-%m")
    if not rows:
        return [f"<p class='note'>No open deals at the end of {key}.</p>"]
    steps = list(dict.fromkeys((r[1], r[2] or "(no step)") for r in rows))
    currencies = sorted({r[3] for r in rows})
    by_key = {(r[1], r[3]): r for r in rows}
    traces = []
    for currency in currencies:
        for what, index, opacity in (("open", 5, 1.0), ("weighted", 6, 0.55)):
            traces.append(
                {
                    "type": "bar",
                    "name": f"{currency} {what}",
                    "x": [name for _, name in steps],
                    "y": [by_key[(s, currency)][index] if (s, currency) in by_key else None for s, _ in steps],
                    "opacity": opacity,
                    "hovertemplate": f"%{{x}}<br>{what} %{{y:,.2f}} {esc(currency)}<extra></extra>",
                }
            )
    figure = {
        "data": traces,
        "layout": {"height": 420, "barmode": "group", "margin": {"t": 20, "b": 140}, "yaxis": {"title": {"text": "value"}}},
    }
    return [figure, table(columns, rows, f"open-{key}{tag}", MONEY | {"funnel_step": "n"}, scroll=True)]


def _sales_cycle(ctx: Context, pipeline: str | None, tag: str) -> Parts:
    columns, rows = _rows(
        ctx,
        f"select outcome, deals, median_days, p75_days, avg_days from {ctx.rel(SALES_CYCLE)} where {{where}} "
        "order by outcome desc",
        pipeline,
    )
    if not rows:
        return ["<p class='note'>No deal won or lost yet.</p>"]
    outcomes = [r[0] for r in rows]
    figure = days_figure(outcomes, rows, 2, {"height": 360, "margin": {"t": 20}})
    kinds = {"median_days": "n", "p75_days": "n", "avg_days": "n"}
    return [figure, table(columns, rows, f"cycle{tag}", kinds)]
