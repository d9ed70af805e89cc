-- One row per pair of consecutive stage steps (1 -> 2, ..., 8 -> 9) and cohort month:
-- of the deals whose entry into from_step counts in cohort_month (as in
-- rep_sales_funnel_monthly: by default a deal's first entry; the definitions stage_entry and
-- backfill_skipped_stages choose, sql/macros/step_entries.sql), how many entered to_step at or
-- after that entry (with backfill_skipped_stages: to_step or a later stage step). So entered
-- equals the report's count of from_step that month. Months where no deal entered from_step
-- have no row.
-- Months are calendar months in the time zone of the definition timezone (UTC by default).
-- The chosen pipeline's steps (the var pipeline, sql/macros/pipelines.sql).
with funnel_steps as (
    {{ counted_steps() }}
),

step_entries as (
    {{ step_entries() }}
),

-- Call steps sit between stage steps in the seed; the pairs skip them (2 -> 3, not 2 -> 2.1).
step_pairs as (
    select
        funnel_step as from_step,
        stage_id as from_stage_id,
        lead(funnel_step) over (order by funnel_step) as to_step,
        lead(stage_id) over (order by funnel_step) as to_stage_id,
    from funnel_steps
    where stage_id is not null
),

-- A deal enters to_step "after" from_step if any of its entries into to_step's stage is at
-- or after its counted entry into from_step: its last entry into that stage tells.
{%- if var('backfill_skipped_stages', false) %}
-- backfill_skipped_stages: an entry into a later stage step passes through to_step too.
reached_steps as (
    select
        stage_history.deal_id,
        stage_steps.from_step as funnel_step,
        max(stage_history.last_entered_at) as last_entered_at,
    from {{ ref('int_deal_stage_history') }} as stage_history
    inner join funnel_steps on stage_history.stage_id = funnel_steps.stage_id
    inner join step_pairs as stage_steps on stage_steps.from_step <= funnel_steps.funnel_step
    group by stage_history.deal_id, stage_steps.from_step
),
{%- endif %}

deal_pairs as (
    select
        step_pairs.from_step,
        step_pairs.to_step,
        entered_from.month as cohort_month,
        coalesce(entered_to.last_entered_at >= entered_from.entered_at, false) as is_converted,
    from step_pairs
    inner join step_entries as entered_from on step_pairs.from_step = entered_from.funnel_step
    {%- if var('backfill_skipped_stages', false) %}
    left join reached_steps as entered_to
        on entered_from.deal_id = entered_to.deal_id
        and step_pairs.to_step = entered_to.funnel_step
    {%- else %}
    left join {{ ref('int_deal_stage_history') }} as entered_to
        on entered_from.deal_id = entered_to.deal_id
        and step_pairs.to_stage_id = entered_to.stage_id
    {%- endif %}
    where step_pairs.to_step is not null
),

final as (
    select
        cohort_month,
        from_step,
        to_step,
        count(*) as entered,
        count(*) filter (where is_converted) as converted,
        count(*) filter (where is_converted) / count(*) as conversion_rate,
    from deal_pairs
    group by cohort_month, from_step, to_step
)

select * from final
order by cohort_month, from_step
