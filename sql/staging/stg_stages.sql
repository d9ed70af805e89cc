-- One row per pipeline stage: its id and name.
with source as (
    select * from {{ source('pipedrive', 'stages') }}
),

renamed as (
    select
        stage_id,
        stage_name,
        -- Until stages.csv carries its pipeline (issue 21): one pipeline, unnamed.
        cast(null as bigint) as pipeline_id,
        cast(null as varchar) as pipeline_name,
        cast(null as bigint) as deal_probability,
    from source
)

select * from renamed
