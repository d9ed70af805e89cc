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
