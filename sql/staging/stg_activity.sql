-- One row per activity of the export: its type, the user it is assigned to, its deal,
-- whether it is done and when it is due. Activities of unknown deals are kept (WARN test).
with source as (
    select * from {{ source('pipedrive', 'activity') }}
),

renamed as (
    select
        activity_id,
        type as activity_type,
        assigned_to_user as user_id,
        deal_id,
        done = 'True' as is_done,
        due_to as due_at,
    from source
)

select * from renamed
