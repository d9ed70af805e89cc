-- Deals per funnel step and calendar month. By default stage steps count a deal in the
-- month of its first ever entry into the stage; call steps count distinct deals with a done
-- call of that type per month of its due date; months without deals have no row.
-- The definitions (funnel/definitions.py, README "Definitions") change what counts:
-- stage_entry, backfill_skipped_stages, timezone, calls (int_completed_activities),
-- call_months and zero_fill. In every mode deals_count counts distinct deals.
-- Which stage entries count (stage_entry, backfill_skipped_stages): sql/macros/step_entries.sql,
-- shared with rep_owner_funnel_monthly so that the owners add up to this report.
with step_entries as (
    {{ step_entries() }}
),

completed_activities as (
    select * from {{ ref('int_completed_activities') }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

-- step_entries has one row per deal, step and month: counting rows counts distinct deals.
stage_counts as (
    select
        month,
        funnel_step,
        count(*) as deals_count,
    from step_entries
    group by all
),

-- A deal may have several qualifying calls of a type in a month: count it once.
{%- if var('call_months', 'every') == 'every' %}
activity_counts as (
    select
        {{ month('completed_activities.due_at') }} as month,
        funnel_steps.funnel_step,
        count(distinct completed_activities.deal_id) as deals_count,
    from completed_activities
    inner join funnel_steps on completed_activities.activity_type = funnel_steps.activity_type
    group by all
),
{%- else %}
-- call_months = first: once per deal and call step, in the month of its earliest call.
first_calls as (
    select
        completed_activities.deal_id,
        funnel_steps.funnel_step,
        min(completed_activities.due_at) as due_at,
    from completed_activities
    inner join funnel_steps on completed_activities.activity_type = funnel_steps.activity_type
    group by all
),

activity_counts as (
    select
        {{ month('due_at') }} as month,
        funnel_step,
        count(distinct deal_id) as deals_count,
    from first_calls
    group by all
),
{%- endif %}

counted as (
    select * from stage_counts
    union all
    select * from activity_counts
),
{%- if var('zero_fill', false) %}

-- zero_fill: every month from the report's earliest to its latest, for every step.
months as (
    select unnest(generate_series(min(month), max(month), interval 1 month))::date as month
    from counted
    where deals_count > 0 and month is not null
),

filled as (
    select
        months.month,
        funnel_steps.funnel_step,
        coalesce(counted.deals_count, 0) as deals_count,
    from months
    cross join funnel_steps
    left join counted
        on months.month = counted.month
        and funnel_steps.funnel_step = counted.funnel_step
),
{%- endif %}

final as (
    select
        counted.month,
        funnel_steps.kpi_name,
        counted.funnel_step,
        counted.deals_count,
    from {{ 'filled' if var('zero_fill', false) else 'counted' }} as counted
    inner join funnel_steps on counted.funnel_step = funnel_steps.funnel_step
    {%- if not var('zero_fill', false) %}
    where counted.deals_count > 0
    {%- endif %}
)

select * from final
order by month, funnel_step
