"""Reading a committed build: a model's rows, one month of it, or two environments side by side."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from funnel import database
from funnel.config import IDENTIFIER, Environment
from funnel.errors import ConfigError, FunnelError, did_you_mean
from funnel.quoting import quote_literal, relation

DEFAULT_MODEL = "rep_sales_funnel_monthly"
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # use with fullmatch
KEY = ("month", "kpi_name", "funnel_step")
MEASURE = "deals_count"


@dataclass(frozen=True)
class Table:
    """Rows to show: column names, rows of Python values, and a title."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    title: str


def check_month(month: str) -> str:
    """'2024-02' -> '2024-02-01'; raise ConfigError for anything else."""
    if not MONTH.fullmatch(month):
        raise ConfigError(f"--month '{month}' is not a month; use YYYY-MM, e.g. 2024-02.")
    return f"{month}-01"


def show(env: Environment, model: str = DEFAULT_MODEL, month: str | None = None) -> Table:
    """The rows of `model` in `env`'s last build (one month of it when `month` is given)."""
    with database.read(env) as con:
        columns = _columns(con, env, model)
        where, params = _month_filter(columns, month)
        order = "month, funnel_step" if set(KEY) <= set(columns) else "all"
        rows = con.execute(f"select * from {relation(env.schema, model)}{where} order by {order}", params).fetchall()
        if month and not rows:
            raise FunnelError(f"no rows for {month} in {model} (env '{env.name}'); {_month_range(con, env, model)}.")
    title = f"{model} · {env.name}" + (f" · {month}" if month else "")
    return Table(tuple(columns), rows, title)


def compare(env: Environment, other: Environment, model: str = DEFAULT_MODEL, month: str | None = None) -> Table:
    """`model` in two environments, joined on its key, with the difference of the counts."""
    if other.name == env.name:
        raise ConfigError(
            f"--compare {other.name} is the env being shown; compare with another one, e.g. --env dev --compare prod."
        )
    with database.read(other):
        pass  # fail here, naming `other`, when it has no build
    with database.read(env) as con:
        columns = _columns(con, env, model)
        if not set(KEY) | {MEASURE} <= set(columns):
            raise ConfigError(f"--compare needs a model with {', '.join(KEY)} and {MEASURE}, like {DEFAULT_MODEL}.")
        con.execute(f"attach {quote_literal(str(other.database))} as other_env (read_only)")
        try:
            _columns(con, other, model, catalog="other_env")
            where, params = _month_filter(columns, month, prefix="coalesce(a.month, b.month)")
            rows = con.execute(
                f"""
                select
                    coalesce(a.month, b.month) as month,
                    coalesce(a.kpi_name, b.kpi_name) as kpi_name,
                    coalesce(a.funnel_step, b.funnel_step) as funnel_step,
                    a.deals_count as left_count,
                    b.deals_count as right_count,
                    coalesce(a.deals_count, 0) - coalesce(b.deals_count, 0) as difference,
                from {relation(env.schema, model)} as a
                full outer join other_env.{relation(other.schema, model)} as b
                    on a.month = b.month and a.funnel_step = b.funnel_step
                {where}
                order by 1, 3
                """,
                params,
            ).fetchall()
        finally:
            con.execute("detach other_env")
    if month and not rows:
        raise FunnelError(f"no rows for {month} in {model} in env '{env.name}' or '{other.name}'.")
    columns_out = (*KEY, env.name, other.name, "difference")
    return Table(columns_out, rows, f"{model} · {env.name} vs {other.name}" + (f" · {month}" if month else ""))


def _columns(con: Any, env: Environment, model: str, catalog: str | None = None) -> list[str]:
    if not IDENTIFIER.fullmatch(model):
        raise ConfigError(f"--model '{model}' is not a model name (letters, digits, _).")
    query = "select table_name, column_name from information_schema.columns where table_schema = ?"
    params: list[Any] = [env.schema]
    if catalog:
        query += " and table_catalog = ?"
        params.append(catalog)
    found: dict[str, list[str]] = {}
    for table, column in con.execute(query + " order by ordinal_position", params).fetchall():
        found.setdefault(table, []).append(column)
    if model not in found:
        raise FunnelError(f"no model '{model}' in the build of env '{env.name}'." + did_you_mean(model, sorted(found)))
    return found[model]


def _month_filter(columns: list[str], month: str | None, prefix: str = "month") -> tuple[str, list[Any]]:
    if month is None:
        return "", []
    first_day = check_month(month)
    if "month" not in columns:
        raise ConfigError("--month needs a model with a month column.")
    return f" where {prefix} = ?::date", [first_day]


def _month_range(con: Any, env: Environment, model: str) -> str:
    low, high = con.execute(
        f"select strftime(min(month), '%Y-%m'), strftime(max(month), '%Y-%m') from {relation(env.schema, model)}"
    ).fetchone()
    return f"the build covers {low} to {high}" if low else "the report is empty"


CONVERSION, VELOCITY, LOST_REASONS = "rep_stage_conversion", "rep_stage_velocity", "rep_lost_reasons_monthly"
TOP_LOST_REASONS = 5


@dataclass(frozen=True)
class Summary:
    """One month of the funnel with what a sales manager asks next.

    `funnel` is the month of the report as `show` gives it; `stages` has a row per stage
    step: (funnel_step, kpi_name, entered, to_step, converted, conversion_rate,
    median_days), conversion of the deals that first entered the step that month and
    median days in the step over the whole build; `lost_reasons` the month's most frequent
    lost reasons: (lost_reason, deals_count, share of the month's lost deals).
    """

    month: str
    funnel: Table
    stages: Table
    lost_reasons: Table


def summary(env: Environment, month: str | None = None) -> Summary:
    """The summary of `month` (YYYY-MM; default: the report's latest month) in `env`."""
    with database.read(env) as con:
        for model in (DEFAULT_MODEL, CONVERSION, VELOCITY, LOST_REASONS):
            _columns(con, env, model)
        if month is None:
            latest = con.execute(f"select strftime(max(month), '%Y-%m') from {relation(env.schema, DEFAULT_MODEL)}").fetchone()
            if not latest or latest[0] is None:
                raise FunnelError(f"{DEFAULT_MODEL} in env '{env.name}' has no rows to summarise.")
            month = str(latest[0])
    first_day = check_month(month)
    funnel = show(env, DEFAULT_MODEL, month)
    with database.read(env) as con:
        stages = con.execute(
            f"""
            select
                steps.funnel_step,
                steps.kpi_name,
                conversion.entered,
                conversion.to_step,
                conversion.converted,
                conversion.conversion_rate,
                velocity.median_days,
            from {relation(env.schema, "funnel_steps")} as steps
            left join {relation(env.schema, CONVERSION)} as conversion
                on steps.funnel_step = conversion.from_step and conversion.cohort_month = ?::date
            left join {relation(env.schema, VELOCITY)} as velocity on steps.funnel_step = velocity.funnel_step
            where steps.stage_id is not null
            order by steps.funnel_step
            """,
            [first_day],
        ).fetchall()
        lost = con.execute(
            f"""
            select
                coalesce(lost_reason, 'reason ' || lost_reason_id || ' (no label)') as lost_reason,
                sum(deals_count)::bigint as deals_count,
                sum(deals_count) / sum(sum(deals_count)) over () as share,
            from {relation(env.schema, LOST_REASONS)}
            where month = ?::date
            group by all
            order by deals_count desc, lost_reason
            limit {TOP_LOST_REASONS}
            """,
            [first_day],
        ).fetchall()
    stage_columns = ("funnel_step", "kpi_name", "entered", "to_step", "converted", "conversion_rate", "median_days")
    return Summary(
        month,
        funnel,
        Table(stage_columns, stages, f"conversion and days in step · {env.name} · {month}"),
        Table(("lost_reason", "deals_count", "share"), lost, f"top lost reasons · {env.name} · {month}"),
    )
