-- One row per entry of a deal into a stage: the stage_id rows of deal_changes, with the
-- stage id as a number and when the deal next entered a stage. Read once here, then by
-- every model that needs a deal's stage entries (int_deal_stage_history, rep_stage_velocity,
-- rep_lost_reasons_monthly, the stage_entry definitions of rep_sales_funnel_monthly)
-- instead of each re-scanning the 7M-row deal_changes. A non-numeric new_value gives a
-- NULL stage_id (test stage_id_is_a_number on int_deal_stage_history).
with deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),

stage_changes as (
    select
        deal_id,
        try_cast(new_value as bigint) as stage_id,
        changed_at,
    from deal_changes
    where changed_field_key = 'stage_id'
),

-- Entries of a deal at the same instant are ordered by stage id: the earlier of them is
-- followed at that same instant (it held for no time).
stage_entries as (
    select
        deal_id,
        stage_id,
        changed_at,
        lead(changed_at) over (partition by deal_id order by changed_at, stage_id) as next_entered_at,
    from stage_changes
)

select * from stage_entries
