"""Rows on stdout: a model's or a summary's table as csv, json, or a rich table with bars.

Only the CLI imports this module (it imports rich inside the functions that draw).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from funnel.cli.console import BARS_FROM_WIDTH, info, plain, printable, rich_text, stdout_is_terminal

if TYPE_CHECKING:
    from rich.table import Table as RichTable

    from funnel.outputs.query import Summary, Table


def print_table(table: Table, fmt: str, compact: bool = False) -> None:
    """`table` on stdout as csv, json, or a rich table (`compact`: without rules, to fit more)."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        # Into a pipe or a file, csv is the data exactly; on a terminal it is shown, and a
        # control character in it would be obeyed (as `ls` does, it is shown escaped there).
        shown = printable if stdout_is_terminal() else str
        writer.writerow([shown(c) for c in table.columns])
        writer.writerows([[shown(plain(v)) for v in row] for row in table.rows])
        sys.stdout.write(buffer.getvalue())
    elif fmt == "json":
        records = [dict(zip(table.columns, (_json(v) for v in row), strict=True)) for row in table.rows]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    else:
        from rich.console import Console

        console = Console(highlight=False)
        console.print(rich_table(table, with_bars=console.width >= BARS_FROM_WIDTH, compact=compact))
        return
    if table.truncated:
        info(f"showing {len(table.rows):,} of {table.total:,} rows; --limit 0 for all")
    if table.definitions:  # the title says it in a terminal; csv and json stay plain data
        info("built with definitions: ", table.definitions)
    if table.counted:  # as the title says it
        info("counts the pipeline ", f"{table.counted} only")


def print_summary(summary: Summary) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    for renderable in rich_summary(summary, with_bars=console.width >= BARS_FROM_WIDTH):
        console.print(renderable)


def rich_summary(summary: Summary, with_bars: bool = True) -> list[RichTable]:
    """The month's funnel unchanged, then conversion and days per stage step, then lost reasons."""
    from rich.table import Table as RichTable

    stages = RichTable(title=rich_text(summary.stages.title), title_justify="left")
    stages.add_column("step", justify="right")
    stages.add_column("kpi_name", no_wrap=True)
    for name in ("entered", "moved on", "conversion", "median days"):
        stages.add_column(name, justify="right")
    for step, kpi_name, entered, to_step, converted, rate, median_days in summary.stages.rows:
        moved_on = f"{converted:,} to {to_step}" if to_step is not None else "—"
        stages.add_row(str(step), rich_text(kpi_name), cell(entered), moved_on, percent(rate), days(median_days))
    lost = RichTable(title=rich_text(summary.lost_reasons.title), title_justify="left")
    lost.add_column("lost_reason")
    lost.add_column("deals_count", justify="right")
    lost.add_column("share", justify="right")
    for reason, count, share in summary.lost_reasons.rows:
        lost.add_row(rich_text(plain(reason)), cell(count), percent(share))
    if not summary.lost_reasons.rows:
        lost.add_row("no deals lost this month", "—", "—")
    return [rich_table(summary.funnel, with_bars), stages, lost]


def rich_table(table: Table, with_bars: bool = True, compact: bool = False) -> RichTable:
    """The rows as a rich table: a rule between months and, for the funnel, a bar per step.

    A cell holding a tuple (a model's dependencies) lists its items separated by commas.
    """
    from rich import box
    from rich.table import Table as RichTable

    caption = f"showing {len(table.rows):,} of {table.total:,} rows; --limit 0 for all" if table.truncated else None
    view = RichTable(
        title=rich_text(table.title) if table.title else None,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=None if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
    )
    for i, name in enumerate(table.columns):
        numeric = bool(table.rows) and all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in table.rows)
        # The first column names the row (a model, a month): whole, so it can be typed back.
        view.add_column(rich_text(name), justify="right" if numeric else "left", no_wrap=i == 0, overflow="fold")
    bars = _bars(table) if with_bars else []
    if bars:
        view.add_column("", style="cyan", no_wrap=True)
    months = [row[0] for row in table.rows] if table.columns[:1] == ("month",) else [None] * len(table.rows)
    # Ids are names, not quantities: 106553, not 106,553.
    is_id = [name.endswith("_id") for name in table.columns]
    for i, row in enumerate(table.rows):
        cells = [rich_text(plain(v) if is_id[j] and v is not None else cell(v)) for j, v in enumerate(row)]
        cells += [bars[i]] if bars else []
        # A rule between months keeps each month's funnel readable at a glance.
        view.add_row(*cells, end_section=i + 1 < len(months) and months[i + 1] != months[i])
    return view


EIGHTHS = " ▏▎▍▌▋▊▉"  # a bar's last cell: 0 to 7 eighths of a block


def _bars(table: Table, width: int = 16) -> list[str]:
    """Each row's deals_count as a bar, relative to the largest step of its month.

    Bars are drawn in eighths of a character, so 1 deal is visibly shorter than 17; any
    count above 0 gets at least one eighth.
    """
    if "month" not in table.columns or "deals_count" not in table.columns:
        return []
    month, count = table.columns.index("month"), table.columns.index("deals_count")
    largest: dict[Any, int] = {}
    for row in table.rows:
        largest[row[month]] = max(largest.get(row[month], 0), row[count] or 0)
    return [_bar(row[count] or 0, largest[row[month]], width) for row in table.rows]


def _bar(value: int, largest: int, width: int) -> str:
    if value <= 0 or largest <= 0:
        return ""
    eighths = max(1, round(8 * width * value / largest))
    full, rest = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, tuple):
        return ", ".join(plain(v) for v in value) or "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return plain(value)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def days(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value
