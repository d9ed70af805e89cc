"""`funnel show --summary`, after the funnel: the deal tables a sales manager asks for first
(funnel/outputs/manager.py reads them), as rich tables."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from funnel.cli.console import rich_text
from funnel.cli.tables import cell, days, percent

if TYPE_CHECKING:
    from rich.table import Table as RichTable

    from funnel.outputs.manager import DealSummary
    from funnel.outputs.query import Table

# column -> (heading, how a value is shown); the pipeline column only when a row names one
SHOWN: dict[str, tuple[str, Any]] = {
    "cohort_month": ("added in", lambda v: _month(v)),
    "month": ("won in", lambda v: _month(v)),
    "pipeline": ("pipeline", cell),
    "funnel_step": ("step", cell),
    "kpi_name": ("kpi_name", cell),
    "currency": ("currency", cell),
    "deals": ("deals", cell),
    "won": ("won", cell),
    "lost": ("lost", cell),
    "open": ("open", cell),
    "win_rate": ("win rate", percent),
    "won_deals": ("won deals", cell),
    "won_value": ("won value", lambda v: _money(v)),
    "avg_won_value": ("average", lambda v: _money(v)),
    "open_deals": ("open deals", cell),
    "open_value": ("open value", lambda v: _money(v)),
    "weighted_value": ("weighted", lambda v: _money(v)),
    "outcome": ("outcome", cell),
    "median_days": ("median days", days),
    "p75_days": ("75th pct days", days),
    "avg_days": ("average days", days),
}
TEXT_COLUMNS = {"pipeline", "kpi_name", "currency", "outcome", "cohort_month", "month"}


def print_deal_summary(deals: DealSummary) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if deals.missing:
        console.print(rich_text(f"deals: {deals.missing}."))
        return
    for renderable in rich_deal_summary(deals):
        console.print(renderable)


def rich_deal_summary(deals: DealSummary) -> list[RichTable]:
    """Win rate by cohort, won value per month, open pipeline at the month end, sales cycle."""
    empty = {
        "win_rate": "no deals added in these months",
        "won_value": "no deals won in these months",
        "open_pipeline": f"no open deals at the end of {deals.month}",
        "sales_cycle": "no closed deals",
    }
    return [_rich(getattr(deals, name), none) for name, none in empty.items()]


def _rich(table: Table, none: str) -> RichTable:
    from rich.table import Table as RichTable

    pipeline_at = table.columns.index("pipeline")
    columns = [c for c in table.columns if c != "pipeline" or any(r[pipeline_at] is not None for r in table.rows)]
    out = RichTable(title=rich_text(table.title), title_justify="left")
    for column in columns:
        justify: Literal["left", "right"] = "left" if column in TEXT_COLUMNS else "right"
        out.add_column(SHOWN[column][0], justify=justify, no_wrap=column not in ("kpi_name", "pipeline"))
    for row in table.rows:
        values = dict(zip(table.columns, row, strict=True))
        out.add_row(*(rich_text(SHOWN[c][1](values[c])) for c in columns))
    if not table.rows:
        out.add_row(none, *("—" for _ in columns[1:]))
    return out


def _month(value: date | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m")


def _money(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:,.2f}"
