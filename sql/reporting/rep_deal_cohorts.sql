-- One row per cohort month and funnel step, zeros included: of the deals created in
-- cohort_month (the month of a deal's earliest add_time row), how many ever entered the
-- step's stage (with backfill_skipped_stages: or a later stage step's, as the report counts
-- them, sql/macros/step_entries.sql) or ever had a done call of the step's type. Deals
-- without an add_time row belong to no cohort.
-- Months are calendar months in the time zone of the definition timezone (UTC by default).
with deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),

step_entries as (
    {{ step_entries() }}
),

-- The activities each call step counts (with several pipelines, its pipeline's deals only).
step_calls as (
    {{ step_calls() }}
),

-- The chosen pipeline's steps (the var pipeline, sql/macros/pipelines.sql).
funnel_steps as (
    {{ counted_steps() }}
),

cohort_deals as (
    select
        deal_id,
        {{ month('min(changed_at)') }} as cohort_month,
    from deal_changes
    where changed_field_key = 'add_time' and {{ in_pipeline('deal_id') }}
    group by deal_id
),

cohort_sizes as (
    select
        cohort_month,
        count(*) as cohort_deals,
    from cohort_deals
    group by cohort_month
),

-- A step counts either stage entries or calls (tests on funnel_steps). Whichever entries
-- stage_entry counts, a deal that ever entered a step has some; with stage_entry = "first"
-- step_entries has one row per deal and step, otherwise one per month: count the deal once.
-- A deal may have several done calls of a type: count it once.
stage_reached as (
    select
        cohort_deals.cohort_month,
        step_entries.funnel_step,
        {{ 'count(*)' if var('stage_entry', 'first') == 'first' else 'count(distinct step_entries.deal_id)' }} as reached,
    from step_entries
    inner join cohort_deals on step_entries.deal_id = cohort_deals.deal_id
    group by cohort_deals.cohort_month, step_entries.funnel_step
),

call_reached as (
    select
        cohort_deals.cohort_month,
        step_calls.funnel_step,
        count(distinct step_calls.deal_id) as reached,
    from step_calls
    inner join cohort_deals on step_calls.deal_id = cohort_deals.deal_id
    group by cohort_deals.cohort_month, step_calls.funnel_step
),

reached as (
    select * from stage_reached
    union all
    select * from call_reached
),

final as (
    select
        cohort_sizes.cohort_month,
        funnel_steps.funnel_step,
        funnel_steps.kpi_name,
        cohort_sizes.cohort_deals,
        coalesce(reached.reached, 0) as reached,
        coalesce(reached.reached, 0) / cohort_sizes.cohort_deals as reached_share,
    from cohort_sizes
    cross join funnel_steps
    left join reached
        on cohort_sizes.cohort_month = reached.cohort_month
        and funnel_steps.funnel_step = reached.funnel_step
)

select * from final
order by cohort_month, funnel_step
