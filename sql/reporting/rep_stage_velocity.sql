-- One row per stage step that any deal entered: how long deals stay in it. A deal's time
-- in a step runs from its first entry into the step's stage to its next stage entry
-- strictly after that into a different stage; deals with no such entry have not moved on.
with stage_entries as (
    select * from {{ ref('int_stage_entries') }}
),

stage_history as (
    select * from {{ ref('int_deal_stage_history') }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

-- Deals that entered some stage more than once (a second lifecycle) need their every
-- entry; for all others a stage's first entry is its only one.
busy_deals as (
    select distinct deal_id
    from stage_history
    where times_entered > 1
),

-- A deal that entered each stage once leaves a stage at the earliest first entry strictly
-- after its own (a later row is always another stage). Entries at the same instant as the
-- first entry do not count as leaving.
single_entry_stays as (
    select
        stage_history.deal_id,
        stage_history.stage_id,
        epoch(
            min(stage_history.first_entered_at) over (
                partition by stage_history.deal_id
                order by stage_history.first_entered_at
                range between interval 1 microsecond following and unbounded following
            ) - stage_history.first_entered_at
        ) / 86400 as days_in_step,
    from stage_history
    anti join busy_deals on stage_history.deal_id = busy_deals.deal_id
),

busy_entries as (
    select
        stage_entries.deal_id,
        stage_entries.stage_id,
        stage_entries.changed_at,
    from stage_entries
    semi join busy_deals on stage_entries.deal_id = busy_deals.deal_id
),

busy_stays as (
    select
        stage_history.deal_id,
        stage_history.stage_id,
        epoch(min(busy_entries.changed_at) - stage_history.first_entered_at) / 86400 as days_in_step,
    from stage_history
    semi join busy_deals on stage_history.deal_id = busy_deals.deal_id
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
        avg(days_in_step) as avg_days,
    from step_stays
    group by funnel_step, kpi_name
)

select * from final
order by funnel_step
