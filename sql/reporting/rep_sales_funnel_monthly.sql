-- Deals per funnel step and calendar month. By default stage steps count a deal in the
-- month of its first ever entry into the stage; call steps count distinct deals with a done
-- call of that type per month of its due date; months without deals have no row.
-- The definitions (funnel/definitions.py, README "Definitions") change what counts:
-- stage_entry, backfill_skipped_stages, timezone, calls (int_completed_activities),
-- call_months and zero_fill. In every mode deals_count counts distinct deals.
{%- set stage_entry = var('stage_entry', 'first') %}
{%- set backfill = var('backfill_skipped_stages', false) %}
with stage_history as (
    select * from {{ ref('int_deal_stage_history') }}
),
{%- if stage_entry != 'first' %}

all_stage_entries as (
    select * from {{ ref('int_stage_entries') }}
),
{%- endif %}
{%- if stage_entry == 'first_per_lifecycle' %}

deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),
{%- endif %}

completed_activities as (
    select * from {{ ref('int_completed_activities') }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),
{%- if stage_entry == 'first' and not backfill %}

-- int_deal_stage_history has one row per deal and stage, and each stage feeds one step
-- (tests on funnel_steps), so counting rows counts distinct deals here.
stage_counts as (
    select
        {{ month('stage_history.first_entered_at') }} as month,
        funnel_steps.funnel_step,
        count(*) as deals_count,
    from stage_history
    inner join funnel_steps on stage_history.stage_id = funnel_steps.stage_id
    group by all
),
{%- elif stage_entry == 'first' %}

-- backfill_skipped_stages: a deal passed through stage step S no later than its earliest
-- entry into S or any later stage step, so that entry counts for S too.
step_entries as (
    select
        stage_history.deal_id,
        funnel_steps.funnel_step,
        stage_history.first_entered_at,
    from stage_history
    inner join funnel_steps on stage_history.stage_id = funnel_steps.stage_id
),

stage_steps as (
    select funnel_step from funnel_steps where stage_id is not null
),

backfilled as (
    select
        step_entries.deal_id,
        stage_steps.funnel_step,
        min(step_entries.first_entered_at) as entered_at,
    from step_entries
    inner join stage_steps on stage_steps.funnel_step <= step_entries.funnel_step
    group by step_entries.deal_id, stage_steps.funnel_step
),

stage_counts as (
    select
        {{ month('entered_at') }} as month,
        funnel_step,
        count(*) as deals_count,
    from backfilled
    group by all
),
{%- else %}

-- Every entry into a stage, with the step it feeds. Stage ids are whole numbers (the CSV
-- loader checks them), as in int_deal_stage_history.
stage_entries as (
    select
        all_stage_entries.deal_id,
        all_stage_entries.changed_at,
        funnel_steps.funnel_step,
    from all_stage_entries
    inner join funnel_steps on all_stage_entries.stage_id = funnel_steps.stage_id
),
{%- if stage_entry == 'every' %}

counted_entries as (
    select deal_id, changed_at, funnel_step from stage_entries
),
{%- else %}

-- first_per_lifecycle: a deal's k-th add_time row starts its k-th lifecycle; an entry
-- belongs to the latest lifecycle started at or before it (add_time rows at the same
-- instant come first), entries before the first add_time to the first lifecycle.
events as (
    select deal_id, changed_at, funnel_step, false as is_start from stage_entries
    union all
    select deal_id, changed_at, null as funnel_step, true as is_start
    from deal_changes
    where changed_field_key = 'add_time'
),

numbered_entries as (
    select
        deal_id,
        changed_at,
        funnel_step,
        is_start,
        greatest(
            count(*) filter (where is_start) over (
                partition by deal_id
                order by changed_at, is_start desc
                rows between unbounded preceding and current row
            ),
            1
        ) as lifecycle,
    from events
),

counted_entries as (
    select
        deal_id,
        min(changed_at) as changed_at,
        funnel_step,
    from numbered_entries
    where not is_start
    group by deal_id, funnel_step, lifecycle
),
{%- endif %}

stage_counts as (
    select
        {{ month('changed_at') }} as month,
        funnel_step,
        count(distinct deal_id) as deals_count,
    from counted_entries
    group by all
),
{%- endif %}

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
