"""Reading a committed build: a model's rows, one month of it, or two environments side by side."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from funnel import names
from funnel.build import record as records
from funnel.engine import database
from funnel.errors import ConfigError, FunnelError, did_you_mean
from funnel.project.config import IDENTIFIER, Environment
from funnel.quoting import quote_ident, quote_literal, relation

DEFAULT_MODEL = names.SALES_FUNNEL
PIPELINE_FUNNEL = names.PIPELINE_FUNNEL
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # use with fullmatch
KEY = ("month", "kpi_name", "funnel_step")
MEASURE = "deals_count"


MONTH_COLUMNS = ("month", "cohort_month")  # what --month, --from and --to filter on, the first present


@dataclass(frozen=True)
class Table:
    """Rows to show: column names, rows of Python values, and a title.

    `total` is how many rows matched when `rows` holds only the first of them (a limit).
    """

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    title: str
    total: int | None = None
    definitions: str = ""  # the build's non-default definitions ('stage_entry=every'), '' for none
    counted: str = ""  # the pipeline a model of one pipeline counts (names.ONE_PIPELINE), '' for none

    @property
    def truncated(self) -> bool:
        return self.total is not None and self.total > len(self.rows)


@dataclass(frozen=True)
class Months:
    """Which months to show: one (`--month`), a range (`--from`, `--to`, inclusive), or all.

    Values are YYYY-MM, checked with MONTH; either end of a range may be open.
    """

    first: str | None = None
    last: str | None = None

    @classmethod
    def one(cls, month: str | None) -> Months:
        return cls(month, month)

    @property
    def label(self) -> str:
        if self.first == self.last:
            return self.first or ""
        return f"{self.first or '…'} to {self.last or '…'}"


def latest_complete_month(con: Any, schema: str, found: records.BuildRecord | None) -> str | None:
    """The last month (YYYY-MM) that ends before the export's latest change_time, in the
    build's time zone; None for an export without changes."""
    tz = str((found.vars if found else {}).get("timezone") or "UTC")
    latest = "max(changed_at)" if tz == "UTC" else f"timezone({quote_literal(tz)}, timezone('UTC', max(changed_at)))"
    row = con.execute(
        f"select strftime(date_trunc('month', {latest}) - interval 1 month, '%Y-%m') from {relation(schema, 'stg_deal_changes')}"
    ).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def check_month(month: str) -> str:
    """'2024-02' -> '2024-02-01'; raise ConfigError for anything else."""
    if not MONTH.fullmatch(month):
        raise ConfigError(f"--month '{month}' is not a month; use YYYY-MM, e.g. 2024-02.")
    return f"{month}-01"


def show(
    env: Environment,
    model: str = DEFAULT_MODEL,
    month: str | Months | None = None,
    limit: int | None = None,
    pipeline: str | None = None,
) -> Table:
    """The rows of `model` in `env`'s last build, the first `limit` of them (None: all).

    `month` keeps one month (YYYY-MM) or a range of them (`Months`); `pipeline` one
    pipeline of a model with a pipeline column (PIPELINE_FUNNEL). The funnel is shown in
    funnel order; any other model in its own order (its `order by`, which the build keeps
    in the table), never re-sorted.
    """
    months = month if isinstance(month, Months) else Months.one(month)
    with database.read(env) as con:
        columns = _columns(con, env, model)
        where, params = _month_filter(columns, months)
        if pipeline is not None:
            where += (" and " if where else " where ") + "pipeline = ?"
            params.append(pipeline)
        source = f"from {relation(env.schema, model)}{where}"
        order = " order by month, funnel_step" if model == DEFAULT_MODEL and set(KEY) <= set(columns) else ""
        if limit is None:
            rows = con.execute(f"select * {source}{order}", params).fetchall()
            total = len(rows)
        else:
            rows = con.execute(f"select * {source}{order} limit {int(limit)}", params).fetchall()
            total = len(rows) if len(rows) < limit else _count(con, source, params)
        if (months.first or months.last) and not rows:
            covered = _month_range(con, env, model, columns)
            raise FunnelError(f"no rows for {months.label} in {model} (env '{env.name}'); {covered}.")
        built_with = records.recorded(con)
        counted = counted_pipeline(con) if model in names.ONE_PIPELINE else None
    title = f"{model} · {env.name}" + (f" · {pipeline or counted}" if pipeline or counted else "")
    title += f" · {months.label}" if months.first or months.last else ""
    title += f" · {built_with}" if built_with else ""
    return Table(tuple(columns), rows, title, total, built_with, counted or "")


def counted_pipeline(con: Any, catalog: str | None = None) -> str | None:
    """The pipeline the models of names.ONE_PIPELINE count in the build open in `con`
    (attached as `catalog`): the var `pipeline` its record holds; None for a seed that
    names no pipeline (one funnel)."""
    record = records.read(con, catalog)
    value = record.vars.get("pipeline") if record else None
    return None if value is None else str(value)


def counted_with(con: Any, model: str) -> str:
    """How `model` of the build open in `con` counts, in words, for whoever reads it elsewhere
    (PostgreSQL's table comments): the definitions it was built with (README "Definitions")
    and, for a model of one pipeline, which pipeline."""
    words = f"built with {records.recorded(con) or 'the default definitions'}"
    counted = counted_pipeline(con) if model in names.ONE_PIPELINE else None
    return words + (f"; counts the pipeline {counted} only" if counted is not None else "")


def counted(env: Environment) -> str | None:
    """counted_pipeline of `env`'s last build."""
    with database.read(env) as con:
        return counted_pipeline(con)


def pipelines(env: Environment) -> list[str]:
    """The pipelines PIPELINE_FUNNEL names in `env`'s last build, sorted; [] without the model.

    A seed without a pipeline column gives one pipeline, NULL: no name, so [].
    """
    with database.read(env) as con:
        if PIPELINE_FUNNEL not in database.table_columns(con, env.schema, None):
            return []
        found = con.execute(
            f"select distinct pipeline from {relation(env.schema, PIPELINE_FUNNEL)} where pipeline is not null order by 1"
        ).fetchall()
    return [str(row[0]) for row in found]


def _count(con: Any, source: str, params: list[Any]) -> int:
    row = con.execute(f"select count(*) {source}", params).fetchone()
    return int(row[0]) if row else 0


def compare(env: Environment, other: Environment, model: str = DEFAULT_MODEL, month: str | Months | None = None) -> Table:
    """`model` in two environments, joined on its key, with the difference of the counts.

    The key is every column but the count and the names that label another column
    (kpi_name, owner_name): a model with a pipeline or an owner column is compared pipeline
    by pipeline, owner by owner. A model of one pipeline (names.ONE_PIPELINE) compares only
    between builds that count the same pipeline: another pipeline's steps share its numbers.
    """
    months = month if isinstance(month, Months) else Months.one(month)
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
        built_with = records.recorded(con, catalog=None), records.recorded(con, catalog="other_env")
        try:
            theirs = _columns(con, other, model, catalog="other_env")
            counted = _counted_pipelines(con, model, (env, other))
            shown = [c for c in columns if c != MEASURE and c in theirs]
            keys = [c for c in shown if not _is_label(c)]
            where, params = _month_filter(columns, months, column="coalesce(a.month, b.month)")
            rows = con.execute(
                f"""
                select
                    {", ".join(f"coalesce(a.{quote_ident(c)}, b.{quote_ident(c)})" for c in shown)},
                    a.{MEASURE} as left_count,
                    b.{MEASURE} as right_count,
                    coalesce(a.{MEASURE}, 0) - coalesce(b.{MEASURE}, 0) as difference,
                from {relation(env.schema, model)} as a
                full outer join other_env.{relation(other.schema, model)} as b
                    on {" and ".join(f"a.{quote_ident(c)} is not distinct from b.{quote_ident(c)}" for c in keys)}
                {where}
                order by {", ".join(str(shown.index(c) + 1) for c in keys)}
                """,
                params,
            ).fetchall()
        finally:
            con.execute("detach other_env")
    if (months.first or months.last) and not rows:
        raise FunnelError(f"no rows for {months.label} in {model} in env '{env.name}' or '{other.name}'.")
    columns_out = (*shown, env.name, other.name, "difference")
    label = (f" · {counted}" if counted else "") + (f" · {months.label}" if months.first or months.last else "")
    if any(built_with):
        sides = [f"{e.name} ({b or 'default definitions'})" for e, b in zip((env, other), built_with, strict=True)]
        title, note = f"{model} · {sides[0]} vs {sides[1]}{label}", f"{sides[0]} vs {sides[1]}"
    else:
        title, note = f"{model} · {env.name} vs {other.name}{label}", ""
    return Table(columns_out, rows, title, definitions=note, counted=counted or "")


def _is_label(column: str) -> bool:
    """A column naming what another column identifies (kpi_name of funnel_step, owner_name of owner_id)."""
    return column.endswith("_name")


def _counted_pipelines(con: Any, model: str, envs: tuple[Environment, Environment]) -> str | None:
    """The pipeline both builds (the env's, and `other_env` attached) count `model` for; None
    for a model of every pipeline or a seed naming none. Two different ones: FunnelError."""
    if model not in names.ONE_PIPELINE:
        return None
    found = [counted_pipeline(con), counted_pipeline(con, "other_env")]
    if found[0] != found[1]:
        env, other = envs
        said = [f"the pipeline '{p}'" if p is not None else "no named pipeline" for p in found]
        raise FunnelError(
            f"{model} counts {said[0]} in env '{env.name}' and {said[1]} in env '{other.name}': another pipeline's "
            f"steps share its step numbers; build both with the same --var pipeline=NAME, or compare every "
            f"pipeline with --model {PIPELINE_FUNNEL}."
        )
    return found[0]


def _has(con: Any, env: Environment, relation_name: str) -> bool:
    return relation_name in database.table_columns(con, env.schema)


def _columns(con: Any, env: Environment, model: str, catalog: str | None = None) -> list[str]:
    if not IDENTIFIER.fullmatch(model):
        raise ConfigError(f"--model '{model}' is not a model name (letters, digits, _).")
    found = database.table_columns(con, env.schema, catalog)
    if model not in found:
        raise FunnelError(
            f"no model '{model}' in the build of env '{env.name}'."
            + (did_you_mean(model, sorted(found)) if found else "")
            + f" Build it with funnel build --env {env.name}."
        )
    return [column for column, _ in found[model]]


def _month_filter(columns: list[str], months: Months, column: str | None = None) -> tuple[str, list[Any]]:
    """The where clause keeping `months`, on `column` (default: the model's month column)."""
    if months.first is None and months.last is None:
        return "", []
    name = next((c for c in MONTH_COLUMNS if c in columns), None)
    if name is None:
        raise ConfigError(f"--month, --from and --to need a model with a {' or '.join(MONTH_COLUMNS)} column.")
    target = column or quote_ident(name)
    clauses, params = [], []
    if months.first:
        clauses.append(f"{target} >= ?::date")
        params.append(check_month(months.first))
    if months.last:
        # Up to the end of the last month, should a model hold days rather than months.
        clauses.append(f"{target} < ?::date + interval 1 month")
        params.append(check_month(months.last))
    return " where " + " and ".join(clauses), params


def _month_range(con: Any, env: Environment, model: str, columns: list[str]) -> str:
    name = quote_ident(next(c for c in MONTH_COLUMNS if c in columns))
    low, high = con.execute(
        f"select strftime(min({name}), '%Y-%m'), strftime(max({name}), '%Y-%m') from {relation(env.schema, model)}"
    ).fetchone()
    return f"the build covers {low} to {high}" if low else "the report is empty"


CONVERSION, VELOCITY, LOST_REASONS = names.STAGE_CONVERSION, names.STAGE_VELOCITY, names.LOST_REASONS
TOP_LOST_REASONS = 5


@dataclass(frozen=True)
class Summary:
    """One month of the funnel with what a sales manager asks next.

    `funnel` is the month of the report as `show` gives it; `stages` has a row per stage
    step: (funnel_step, kpi_name, entered, to_step, converted, conversion_rate,
    median_days), conversion of the deals that first entered the step that month and
    median days in the step over the whole build; `lost_reasons` the month's most frequent
    lost reasons: (lost_reason, deals_count, share of the month's lost deals). `label`
    is how titles name the month: '2025-05 (incomplete)' when the export ends during it.
    """

    month: str
    funnel: Table
    stages: Table
    lost_reasons: Table
    label: str = ""


def summary(env: Environment, month: str | None = None) -> Summary:
    """The summary of `month` (YYYY-MM) in `env`; by default of the report's latest complete
    month (latest_complete_month, as `funnel report` opens on), else its latest. A month
    the export ends during is titled "(incomplete)"."""
    with database.read(env) as con:
        for model in (DEFAULT_MODEL, CONVERSION, VELOCITY, LOST_REASONS):
            _columns(con, env, model)
        complete = latest_complete_month(con, env.schema, records.read(con)) if _has(con, env, "stg_deal_changes") else None
        if month is None:
            months = con.execute(
                "select strftime(max(month), '%Y-%m'), strftime(max(month) filter (month <= ?::date), '%Y-%m') "
                f"from {relation(env.schema, DEFAULT_MODEL)}",
                [f"{complete or '9999-12'}-01"],
            ).fetchone()
            if not months or months[0] is None:
                raise FunnelError(f"{DEFAULT_MODEL} in env '{env.name}' has no rows to summarise.")
            month = str(months[1] or months[0])
    first_day = check_month(month)
    funnel = show(env, DEFAULT_MODEL, month)
    with database.read(env) as con:
        # The steps of the pipeline the analyses count: another pipeline's steps share their
        # numbers, and would get this one's conversion and days under their own names.
        counted = counted_pipeline(con)
        of_pipeline = "" if counted is None else "and steps.pipeline = ?"
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
            from {relation(env.schema, names.FUNNEL_STEPS)} as steps
            left join {relation(env.schema, CONVERSION)} as conversion
                on steps.funnel_step = conversion.from_step and conversion.cohort_month = ?::date
            left join {relation(env.schema, VELOCITY)} as velocity on steps.funnel_step = velocity.funnel_step
            where steps.stage_id is not null {of_pipeline}
            order by steps.funnel_step
            """,
            [first_day] if counted is None else [first_day, counted],
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
    of = f"{env.name} · {counted}" if counted else env.name
    label = f"{month} (incomplete)" if complete is not None and month > complete else month
    if label != month:
        funnel = replace(funnel, title=funnel.title.replace(f" · {month}", f" · {label}"))
    return Summary(
        month,
        funnel,
        Table(stage_columns, stages, f"conversion and days in step · {of} · {label}"),
        Table(("lost_reason", "deals_count", "share"), lost, f"top lost reasons · {of} · {label}"),
        label,
    )
