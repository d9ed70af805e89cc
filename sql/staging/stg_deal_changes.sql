-- One row per change of a deal field (the deal's history): stage entries (stage_id), owner
-- changes (user_id), losses (lost_reason) and creation (add_time), with new_value as text.
with source as (
    select * from {{ source('pipedrive', 'deal_changes') }}
),

renamed as (
    select
        deal_id,
        change_time as changed_at,
        changed_field_key,
        new_value,
    from source
)

select * from renamed
