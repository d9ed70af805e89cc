-- For stage steps, every entry the report counts is credited to exactly one owner (or to
-- NULL): per month and step the owners' counts add up to the report's, under every
-- definition (README "Definitions"; both count sql/macros/step_entries.sql).
with report as (
    select * from {{ ref('rep_sales_funnel_monthly') }}
),

by_owner as (
    select * from {{ ref('rep_owner_funnel_monthly') }}
),

funnel_steps as (
    {{ counted_steps() }}
),

owner_totals as (
    select
        month,
        funnel_step,
        sum(deals_count) as deals_count,
    from by_owner
    group by month, funnel_step
),

stage_steps as (
    select funnel_step from funnel_steps where stage_id is not null
)

select
    coalesce(report.month, owner_totals.month) as month,
    coalesce(report.funnel_step, owner_totals.funnel_step) as funnel_step,
    report.deals_count as report_count,
    owner_totals.deals_count as owners_count,
from report
full outer join owner_totals
    on report.month = owner_totals.month
    and report.funnel_step = owner_totals.funnel_step
where coalesce(report.funnel_step, owner_totals.funnel_step) in (select funnel_step from stage_steps)
    and coalesce(report.deals_count, 0) is distinct from coalesce(owner_totals.deals_count, 0)
