-- One row per pipeline stage: its id and name.
with source as (
    select * from {{ source('pipedrive', 'stages') }}
),

renamed as (
    select
        stage_id,
        stage_name,
    from source
)

select * from renamed
