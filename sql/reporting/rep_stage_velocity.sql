-- One row per stage step that any deal entered: how long deals stay in it. A deal's time
-- in a step runs from its first entry into the step's stage to its next stage entry
-- strictly after that into a different stage; deals with no such entry have not moved on.
with stage_entries as (
    select * from {{ ref('int_stage_entries') }}
),

stage_history as (
    select * from {{ ref('int_deal_stage_history') }}
),

-- The chosen pipeline's steps (the var pipeline, sql/macros/pipelines.sql).
funnel_steps as (
    {{ counted_steps() }}
),

-- Deals that entered some stage more than once (a second lifecycle) need their every
-- entry; for all others a stage's first entry is its only one.
busy_deals as (
    select distinct deal_id
    from stage_history
    where times_entered > 1
),

-- Deals with two stage entries at the same instant: see single_entry_stays.
tied_deals as (
    select distinct deal_id
    from stage_entries
    where next_entered_at = changed_at
),

-- A deal that entered each stage once leaves a stage at its earliest entry strictly after
-- the stage's (only) entry, always into another stage: the next entry in time order, as
-- int_stage_entries tells, unless that one is at the same instant (entries at the same
-- instant do not count as leaving). Deals with such a tie take the busy deals' way.
single_entry_stays as (
    select
        stage_entries.deal_id,
        stage_entries.stage_id,
        epoch(stage_entries.next_entered_at - stage_entries.changed_at) / 86400 as days_in_step,
    from stage_entries
    anti join busy_deals on stage_entries.deal_id = busy_deals.deal_id
    anti join tied_deals on stage_entries.deal_id = tied_deals.deal_id
),

slow_deals as (
    select deal_id from busy_deals
    union all
    select deal_id from tied_deals
),

busy_entries as (
    select
        stage_entries.deal_id,
        stage_entries.stage_id,
        stage_entries.changed_at,
    from stage_entries
    semi join slow_deals on stage_entries.deal_id = slow_deals.deal_id
),

busy_stays as (
    select
        stage_history.deal_id,
        stage_history.stage_id,
        epoch(min(busy_entries.changed_at) - stage_history.first_entered_at) / 86400 as days_in_step,
    from stage_history
    semi join slow_deals on stage_history.deal_id = slow_deals.deal_id
    left join busy_entries
        on stage_history.deal_id = busy_entries.deal_id
        and busy_entries.changed_at > stage_history.first_entered_at
        and busy_entries.stage_id is distinct from stage_history.stage_id
    group by stage_history.deal_id, stage_history.stage_id, stage_history.first_entered_at
),

stays as (
    select * from single_entry_stays
    union all
    select * from busy_stays
),

step_stays as (
    select
        funnel_steps.funnel_step,
        funnel_steps.kpi_name,
        stays.days_in_step,
    from stays
    inner join funnel_steps on stays.stage_id = funnel_steps.stage_id
),

final as (
    select
        funnel_step,
        kpi_name,
        count(days_in_step) as deals_left,
        count(*) filter (where days_in_step is null) as not_moved,
        quantile_cont(days_in_step, 0.5) as median_days,
        quantile_cont(days_in_step, 0.75) as p75_days,
        -- The mean of exact microseconds: a sum of doubles would depend on the order of
        -- addition (threads, engines); a sum of whole numbers does not.
        cast(sum(cast(round(days_in_step * 86400000000) as decimal(38, 0))) as double)
            / count(days_in_step) / 86400000000 as avg_days,
    from step_stays
    group by funnel_step, kpi_name
)

select * from final
order by funnel_step
