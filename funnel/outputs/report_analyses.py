"""The analyses sections of `funnel report`, each present when the build holds its model:
stage conversion and cohorts (heatmaps), days in stage, owners of the month, lost reasons.
Sections, the context and the month blocks are in funnel/outputs/report_sections.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from funnel import names
from funnel.outputs.html import esc, table
from funnel.outputs.report_sections import Context, Section, days_figure, per_month, shade_incomplete

CONVERSION, COHORTS, VELOCITY = names.STAGE_CONVERSION, names.DEAL_COHORTS, names.STAGE_VELOCITY
OWNERS, LOST_REASONS = names.OWNER_FUNNEL, names.LOST_REASONS
TOP_OWNERS_CHART, TOP_OWNERS_TABLE, TOP_REASONS = 15, 30, 10


def _all_rows(ctx: Context, model: str, order: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    result = ctx.con.execute(f"select * from {ctx.rel(model)} order by {order}")
    return tuple(d[0] for d in result.description), result.fetchall()


def conversion_section(ctx: Context) -> Section:
    columns, rows = _all_rows(ctx, CONVERSION, "cohort_month, from_step")
    pairs = sorted({(r[1], r[2]) for r in rows})
    months = sorted({r[0] for r in rows})
    by_key = {(r[0], r[1], r[2]): r for r in rows}
    z = [[_at(by_key.get((m, a, b)), 5) for a, b in pairs] for m in months]
    text = [[_counts(by_key.get((m, a, b)), 4, 3) for a, b in pairs] for m in months]
    figure = heatmap([f"{a} → {b}" for a, b in pairs], [ctx.label(m) for m in months], z, text, "conversion")
    note = (
        "Of the deals that first entered a stage step in a month, the share that later entered the next stage step. "
        "Each cell: converted / entered."
    )
    markup = table(columns, rows, CONVERSION, {"conversion_rate": "percent"}, scroll=True, marked=ctx.incomplete_row(0))
    return Section(CONVERSION, "Which deals move on", CONVERSION, note, [figure, markup])


def cohorts_section(ctx: Context) -> Section:
    columns, rows = _all_rows(ctx, COHORTS, "cohort_month, funnel_step")
    steps = sorted({(r[1], r[2]) for r in rows})
    months = sorted({r[0] for r in rows})
    by_key = {(r[0], r[1]): r for r in rows}
    z = [[_at(by_key.get((m, s)), 5) for s, _ in steps] for m in months]
    text = [[_counts(by_key.get((m, s)), 4, 3) for s, _ in steps] for m in months]
    figure = heatmap([f"step {s}" for s, _ in steps], [ctx.label(m) for m in months], z, text, "reached")
    note = "Of the deals created in each month, the share that ever reached each step. Each cell: reached / cohort deals."
    markup = table(columns, rows, COHORTS, {"reached_share": "percent"}, scroll=True, marked=ctx.incomplete_row(0))
    return Section(COHORTS, "How far each month's new deals got", COHORTS, note, [figure, markup])


def velocity_section(ctx: Context) -> Section:
    columns, rows = _all_rows(ctx, VELOCITY, "funnel_step")
    names = [r[1] for r in rows]
    figure = days_figure(names, rows, 4, {"height": 420, "margin": {"t": 20, "b": 140}})
    note = "Days from a deal's first entry into a stage step to its next entry into another stage, over the whole build."
    kinds = {"median_days": "n", "p75_days": "n", "avg_days": "n"}
    return Section(VELOCITY, "Time spent at each step", VELOCITY, note, [figure, table(columns, rows, VELOCITY, kinds)])


def owners_section(ctx: Context) -> Section:
    rows = ctx.con.execute(f"select month, owner_id, owner_name, funnel_step, deals_count from {ctx.rel(OWNERS)}").fetchall()
    by_month: dict[date, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_month.setdefault(row[0], []).append(row[1:])
    parts: list[str | dict[str, Any]] = []
    for month in ctx.months:
        parts += per_month(ctx, month, _owners_month(month, by_month.get(month, [])))
    note = (
        "Deals per owner and step in the month: stage steps credit the deal's owner at the first entry, call steps the "
        f"user the call was assigned to. The {TOP_OWNERS_CHART} owners with the most deals at the first step are charted, "
        f"the first {TOP_OWNERS_TABLE} listed (funnel show --model {OWNERS} --month YYYY-MM has them all)."
    )
    return Section(OWNERS, "Who works the deals", OWNERS, note, parts)


def owner_labels(keys: list[tuple[Any, Any]]) -> dict[tuple[Any, Any], str]:
    """Owner names as a manager knows them, without ids; two owners of one name are told
    apart by a number after the second (a chart would draw them as one bar otherwise)."""
    labels: dict[tuple[Any, Any], str] = {}
    seen: dict[str, int] = {}
    for key in keys:
        owner_id, owner_name = key
        name = "(no owner)" if owner_id is None else (owner_name or "(unnamed user)")
        seen[name] = seen.get(name, 0) + 1
        labels[key] = name if seen[name] == 1 else f"{name} #{seen[name]}"
    return labels


def _owners_month(month: date, rows: list[tuple[Any, ...]]) -> list[str | dict[str, Any]]:
    key = month.strftime("%Y-%m")
    if not rows:
        return [f"<p class='note'>No owner rows in {key}.</p>"]
    steps = sorted({r[2] for r in rows})
    owners: dict[tuple[Any, Any], dict[Decimal, int]] = {}
    for owner_id, owner_name, step, count in rows:
        owners.setdefault((owner_id, owner_name), {})[step] = count
    ranked = sorted(owners.items(), key=lambda item: (-item[1].get(steps[0], 0), -sum(item[1].values()), str(item[0])))
    labels = owner_labels([k for k, _ in ranked])
    top = ranked[:TOP_OWNERS_CHART]
    figure = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "name": f"step {s}",
                "y": [labels[k] for k, _ in top],
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
    columns = ("owner", *(f"step {s}" for s in steps))
    table_rows = [(labels[k], *(c.get(s) for s in steps)) for k, c in ranked[:TOP_OWNERS_TABLE]]
    cut = len(ranked) - TOP_OWNERS_TABLE
    more = [f"<p class='note'>{cut:,} more owners are not listed.</p>"] if cut > 0 else []
    kinds = {f"step {s}": "n" for s in steps}
    return [figure, table(columns, table_rows, f"owners-{key}", kinds, scroll=True), *more]


def lost_section(ctx: Context) -> Section:
    label = "coalesce(lost_reason, 'reason ' || lost_reason_id || ' (no label)')"
    by_month = ctx.con.execute(
        f"select month, {label} as reason, sum(deals_count)::bigint from {ctx.rel(LOST_REASONS)} group by all order by 1, 2"
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
    result = ctx.con.execute(
        f"select * from {ctx.rel(LOST_REASONS)} order by month, deals_count desc, lost_reason_id, last_funnel_step"
    )
    columns, rows = tuple(d[0] for d in result.description), result.fetchall()
    parts: list[str | dict[str, Any]] = [shade_incomplete(ctx, figure)] if by_month else []
    for month in ctx.months:
        mine = [r for r in rows if r[0] == month]
        month_key = month.strftime("%Y-%m")
        markup = (
            table(columns, mine, f"lost-{month_key}", {"last_funnel_step": "n"})
            if mine
            else f"<p class='note'>No deals lost in {esc(month_key)}.</p>"
        )
        parts += per_month(ctx, month, [markup])
    note = (
        f"Lost deals per month and reason over the whole build (the {TOP_REASONS} most frequent reasons), then the "
        "month's rows with the step each deal was lost at."
    )
    return Section(LOST_REASONS, "Why deals are lost", LOST_REASONS, note, parts)


ANALYSES: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    (CONVERSION, conversion_section),
    (COHORTS, cohorts_section),
    (VELOCITY, velocity_section),
    (OWNERS, owners_section),
    (LOST_REASONS, lost_section),
)


def heatmap(x: list[str], y: list[str], z: list[list[Any]], text: list[list[str]], what: str) -> dict[str, Any]:
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
            "margin": {"t": 20, "l": 140},
            "yaxis": {"autorange": "reversed", "type": "category"},
        },
    }


def _at(row: tuple[Any, ...] | None, index: int) -> Any:
    return None if row is None else row[index]


def _counts(row: tuple[Any, ...] | None, part: int, whole: int) -> str:
    return "" if row is None else f"{row[part]:,}/{row[whole]:,}"
