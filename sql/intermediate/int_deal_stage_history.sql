-- Every time a deal entered a stage, numbered per (deal, stage) so that the first
-- entry is easy to find: re-entries (a second lifecycle) keep entry_number > 1.
with deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),

stages as (
    select * from {{ ref('stg_stages') }}
),

stage_changes as (
    select
        deal_id,
        try_cast(new_value as bigint) as stage_id,
        changed_at as entered_at,
    from deal_changes
    where changed_field_key = 'stage_id'
),

numbered as (
    select
        stage_changes.deal_id,
        stage_changes.stage_id,
        stages.stage_name,
        stage_changes.entered_at,
        row_number() over (
            partition by stage_changes.deal_id, stage_changes.stage_id
            order by stage_changes.entered_at
        ) as entry_number,
    from stage_changes
    left join stages on stage_changes.stage_id = stages.stage_id
)

select
    *,
    entry_number = 1 as is_first_entry,
from numbered
