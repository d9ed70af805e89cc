-- Deals per pipeline, funnel step and calendar month: rep_sales_funnel_monthly for every
-- pipeline the funnel_steps seed names at once (pipeline NULL for a seed without a pipeline
-- column: one pipeline). By default stage steps count a deal in the month of its first ever
-- entry into the stage; call steps count distinct deals with a done call of that type per
-- month of its due date (with several pipelines, only deals that ever entered a stage of
-- the step's pipeline); months without deals have no row.
-- The definitions (README "Definitions") change what counts: stage_entry,
-- backfill_skipped_stages, timezone, calls (int_completed_activities), call_months and
-- zero_fill (each pipeline from its own earliest to its latest month). In every mode
-- deals_count counts distinct deals. Which stage entries count: sql/macros/step_entries.sql,
-- which calls: step_calls in sql/macros/pipelines.sql, shared with the other models.
with step_entries as (
    {{ step_entries(all_pipelines=true) }}
),

step_calls as (
    {{ step_calls(all_pipelines=true) }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

-- step_entries has one row per deal, step and month: counting rows counts distinct deals.
stage_counts as (
    select
        pipeline,
        month,
        funnel_step,
        count(*) as deals_count,
    from step_entries
    group by all
),

{%- set every_call_month = var('call_months', 'every') == 'every' %}
{%- if not every_call_month %}
-- call_months = first: once per deal and call step, in the month of its earliest call.
first_calls as (
    select
        deal_id,
        pipeline,
        funnel_step,
        min(due_at) as due_at,
    from step_calls
    group by all
),
{%- endif %}

-- A deal may have several qualifying calls of a type in a month: count it once.
activity_counts as (
    select
        pipeline,
        {{ month('due_at') }} as month,
        funnel_step,
        count(distinct deal_id) as deals_count,
    from {{ 'step_calls' if every_call_month else 'first_calls' }}
    group by all
),

counted as (
    select * from stage_counts
    union all
    select * from activity_counts
),
{%- if var('zero_fill', false) %}

-- zero_fill: every month from each pipeline's earliest to its latest, for each of its steps.
bounds as (
    select
        pipeline,
        min(month) as first_month,
        max(month) as last_month,
    from counted
    where deals_count > 0 and month is not null
    group by pipeline
),

-- The cast outside the unnest: Spark refuses a generator nested in an expression.
months as (
    select
        pipeline,
        cast(month_start as date) as month,
    from (
        select
            pipeline,
            unnest(generate_series(first_month, last_month, interval 1 month)) as month_start,
        from bounds
    ) as series
),

filled as (
    select
        months.pipeline,
        months.month,
        funnel_steps.funnel_step,
        coalesce(counted.deals_count, 0) as deals_count,
    from months
    inner join funnel_steps on months.pipeline is not distinct from funnel_steps.pipeline
    left join counted
        on months.month = counted.month
        and months.pipeline is not distinct from counted.pipeline
        and funnel_steps.funnel_step = counted.funnel_step
),
{%- endif %}

final as (
    select
        counted.pipeline,
        counted.month,
        funnel_steps.kpi_name,
        counted.funnel_step,
        counted.deals_count,
    from {{ 'filled' if var('zero_fill', false) else 'counted' }} as counted
    inner join funnel_steps
        on counted.funnel_step = funnel_steps.funnel_step
        and counted.pipeline is not distinct from funnel_steps.pipeline
    {%- if not var('zero_fill', false) %}
    where counted.deals_count > 0
    {%- endif %}
)

select * from final
order by pipeline nulls first, month, funnel_step
