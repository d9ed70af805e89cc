-- One row per deal and stage it ever entered: when it first and last entered the stage
-- and how often. A deal with a second lifecycle re-enters stages: times_entered > 1, and
-- only first_entered_at counts in the funnel.
with stage_entries as (
    select * from {{ ref('int_stage_entries') }}
),

stages as (
    select * from {{ ref('stg_stages') }}
),

per_deal_stage as (
    select
        deal_id,
        stage_id,
        min(changed_at) as first_entered_at,
        max(changed_at) as last_entered_at,
        count(*) as times_entered,
    from stage_entries
    group by deal_id, stage_id
),

final as (
    select
        per_deal_stage.deal_id,
        per_deal_stage.stage_id,
        stages.stage_name,
        per_deal_stage.first_entered_at,
        per_deal_stage.last_entered_at,
        per_deal_stage.times_entered,
    from per_deal_stage
    left join stages on per_deal_stage.stage_id = stages.stage_id
)

select * from final
