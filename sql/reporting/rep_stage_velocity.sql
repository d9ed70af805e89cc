-- One row per stage step that any deal entered: how long deals stay in it. A deal's time
-- in a step runs from its first entry into the step's stage to its next stage entry
-- strictly after that into a different stage; deals with no such entry have not moved on.
with deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),

stage_history as (
    select * from {{ ref('int_deal_stage_history') }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

stage_entries as (
    select
        deal_id,
        try_cast(new_value as bigint) as stage_id,
        changed_at,
    from deal_changes
    where changed_field_key = 'stage_id'
),

first_entries as (
    select
        stage_history.deal_id,
        stage_history.stage_id,
        stage_history.first_entered_at,
        funnel_steps.funnel_step,
        funnel_steps.kpi_name,
    from stage_history
    inner join funnel_steps on stage_history.stage_id = funnel_steps.stage_id
),

-- Entries at the same instant as the first entry do not count as leaving: strictly after.
stays as (
    select
        first_entries.funnel_step,
        first_entries.kpi_name,
        first_entries.deal_id,
        epoch(min(stage_entries.changed_at) - first_entries.first_entered_at) / 86400 as days_in_step,
    from first_entries
    left join stage_entries
        on first_entries.deal_id = stage_entries.deal_id
        and stage_entries.changed_at > first_entries.first_entered_at
        and stage_entries.stage_id is distinct from first_entries.stage_id
    group by
        first_entries.funnel_step,
        first_entries.kpi_name,
        first_entries.deal_id,
        first_entries.first_entered_at
),

final as (
    select
        funnel_step,
        kpi_name,
        count(days_in_step) as deals_left,
        count(*) filter (where days_in_step is null) as not_moved,
        quantile_cont(days_in_step, 0.5) as median_days,
        quantile_cont(days_in_step, 0.75) as p75_days,
        avg(days_in_step) as avg_days,
    from stays
    group by funnel_step, kpi_name
)

select * from final
order by funnel_step
