-- One row per activity type: its id, display name, whether it is active, and the type key
-- (meeting, sc_2, ...) that funnel_steps maps call steps to.
with source as (
    select * from {{ source('pipedrive', 'activity_types') }}
),

renamed as (
    select
        id as activity_type_id,
        name as activity_type_name,
        active = 'Yes' as is_active,
        type as activity_type,
    from source
)

select * from renamed
