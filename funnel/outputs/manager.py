"""What a sales manager asks first, read from the four deal models of a build: win rate by
cohort, won value per month (per currency), open and weighted pipeline at a month end, and
the sales cycle. `funnel show --summary` prints these (funnel/cli/console.py) and `funnel
report` draws them (funnel/outputs/report_deals.py), from the same queries.

It also says which months are complete: the export's latest timestamp is the latest
`change_time` in deal_changes.csv (activities may be due in the future, so they do not
count), and a month is complete when it ends before it, in the build's `timezone`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from funnel import names
from funnel.build import record as records
from funnel.engine import database
from funnel.outputs.query import Table, check_month
from funnel.project.config import Environment
from funnel.quoting import relation

WIN_RATE, WON_VALUE = names.WIN_RATE, names.WON_VALUE
OPEN_PIPELINE, SALES_CYCLE = names.OPEN_PIPELINE, names.SALES_CYCLE
DEAL_MODELS = (WIN_RATE, WON_VALUE, OPEN_PIPELINE, SALES_CYCLE)
NO_DEALS = "no deals.csv in this export; `funnel pull` writes one"
RECENT_MONTHS = 6  # the summary's win rate and won value: the month and the five before it


@dataclass(frozen=True)
class DealSummary:
    """The four deal tables of one month, or `missing`: why there are none (no deals.csv,
    or a build without the models), '' when there are."""

    month: str
    missing: str
    win_rate: Table
    won_value: Table
    open_pipeline: Table
    sales_cycle: Table


def deals_absent(found: records.BuildRecord | None) -> bool:
    """Whether the build was made from an export without deals.csv (the original export)."""
    return bool(found and found.fingerprints.get("deals", {}).get("absent") is True)


def deal_summary(env: Environment, month: str, label: str = "") -> DealSummary:
    """The deal tables for `month` (YYYY-MM): win rate and won value of the month and the
    five before it, the open pipeline at the month's end, the sales cycle of the build.
    Titles name the month as `label` (Summary.label), by default as `month`."""
    first_day = check_month(month)
    label = label or month
    with database.read(env) as con:
        found = records.read(con)
        present = set(database.table_columns(con, env.schema))
        lacking = [m for m in DEAL_MODELS if m not in present]
        missing = (
            NO_DEALS
            if deals_absent(found)
            else f"the build has no {', '.join(lacking)}; run funnel build --env {env.name}"
            if lacking
            else ""
        )
        empty = Table((), [], "")
        if missing:
            return DealSummary(month, missing, empty, empty, empty, empty)
        since = [first_day, RECENT_MONTHS - 1, first_day]
        window = "between ?::date - to_months(?) and ?::date"
        win_rate = _table(
            con,
            f"select cohort_month, pipeline, deals, won, lost, open, win_rate from {relation(env.schema, WIN_RATE)} "
            f"where cohort_month {window} order by cohort_month, pipeline nulls first",
            since,
            f"win rate by month added · {env.name} · {RECENT_MONTHS} months to {label}",
        )
        won_value = _table(
            con,
            f"select month, pipeline, currency, won_deals, won_value, avg_won_value "
            f"from {relation(env.schema, WON_VALUE)} where month {window} order by month, pipeline nulls first, currency",
            since,
            f"won value per month · {env.name} · {RECENT_MONTHS} months to {label}",
        )
        open_pipeline = _table(
            con,
            f"select pipeline, funnel_step, kpi_name, currency, open_deals, open_value, weighted_value "
            f"from {relation(env.schema, OPEN_PIPELINE)} where month_end = ?::date + interval 1 month - interval 1 day "
            "order by pipeline nulls first, funnel_step nulls last, currency",
            [first_day],
            f"open pipeline at the end of {label} · {env.name}",
        )
        sales_cycle = _table(
            con,
            f"select pipeline, outcome, deals, median_days, p75_days, avg_days from {relation(env.schema, SALES_CYCLE)} "
            "order by pipeline nulls first, outcome desc",
            [],
            f"sales cycle, days from added to won or lost · {env.name}",
        )
    return DealSummary(month, "", win_rate, won_value, open_pipeline, sales_cycle)


def _table(con: Any, sql: str, params: list[Any], title: str) -> Table:
    result = con.execute(sql, params)
    return Table(tuple(d[0] for d in result.description), result.fetchall(), title)
