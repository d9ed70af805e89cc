"""Baseline for the benchmarks: what a careful analyst would write by hand.

One script, DuckDB only: load the six CSVs with the same declared types (strict, no
sniffing), build the same report in one query, save it to a DuckDB file. No layers, no
data tests, no atomic publish. Usage: python plain_duckdb.py RAW_DATA_DIR OUT.duckdb [MEMORY_LIMIT] [MODELS.sql]

With MODELS.sql (written by `bench.py ... --same-models`: the project's own models, rendered,
one `create` statement each), the sources are loaded into their schemas and that script runs
instead of the one report: the same tables funnel builds, without funnel's value rules,
data tests, fingerprints, plan or atomic publish.
"""

import os
import sys

import duckdb

from funnel.project.sources import SOURCES  # the declaration only: a dict of column types, no heavy imports

STEPS = """
select * from (values
    (1.0, 'Step 1: Lead Generation', 1, null), (2.0, 'Step 2: Qualified Lead', 2, null),
    (2.1, 'Step 2.1: Sales Call 1', null, 'meeting'), (3.0, 'Step 3: Needs Assessment', 3, null),
    (3.1, 'Step 3.1: Sales Call 2', null, 'sc_2'), (4.0, 'Step 4: Proposal/Quote Preparation', 4, null),
    (5.0, 'Step 5: Negotiation', 5, null), (6.0, 'Step 6: Closing', 6, null),
    (7.0, 'Step 7: Implementation/Onboarding', 7, null), (8.0, 'Step 8: Follow-up/Customer Success', 8, null),
    (9.0, 'Step 9: Renewal/Expansion', 9, null)
) as t(funnel_step, kpi_name, stage_id, activity_type)
"""

REPORT = f"""
create table rep_sales_funnel_monthly as
with steps as ({STEPS}),
firsts as (
    select deal_id, try_cast(new_value as bigint) as stage_id, min(change_time) as entered_at
    from deal_changes where changed_field_key = 'stage_id' group by all
),
events as (
    select date_trunc('month', entered_at)::date as month, stage_id, null as activity_type, deal_id from firsts
    union all
    select date_trunc('month', due_to)::date, null, type, deal_id from activity where done = 'True'
)
select month, kpi_name, funnel_step::decimal(3, 1) as funnel_step, count(distinct deal_id) as deals_count
from events join steps on events.stage_id = steps.stage_id or events.activity_type = steps.activity_type
group by all
order by month, funnel_step
"""


def main(raw: str, out: str, memory_limit: str | None = None, models: str | None = None) -> None:
    # Rerunnable, like a build: the previous output goes first.
    for stale in (out, out + ".wal"):
        if os.path.exists(stale):
            os.remove(stale)
    con = duckdb.connect(out, config={"memory_limit": memory_limit} if memory_limit else {})
    for s in SOURCES:
        columns = "{" + ", ".join(f"'{c}': '{t.replace(chr(39), chr(39) * 2)}'" for c, t in s.columns.items()) + "}"
        fmt = f", timestampformat = '{s.timestamp_format}'" if s.timestamp_format else ""
        if s.optional_columns:  # a file may leave out its last columns (stages.csv): NULL, as funnel reads them
            fmt += ", null_padding = true"
        table = s.table
        if models:
            con.execute(f"create schema if not exists {s.source_name}")
            table = f"{s.source_name}.{s.table}"
        con.execute(
            f"create table {table} as select * from read_csv('{raw}/{s.file_name}', header = true, "
            f"auto_detect = false, columns = {columns}{fmt})"
        )
    if models:
        with open(models, encoding="utf-8") as f:
            con.execute(f.read())
    else:
        con.execute(REPORT)
    con.close()


if __name__ == "__main__":
    main(*[a or None for a in sys.argv[1:5]])
