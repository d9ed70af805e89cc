-- One row per pipeline stage: its id and name, its pipeline, its place in the pipeline
-- (order_nr) and the deal probability it gives. A stages.csv without the pipeline columns
-- (the original export) is one pipeline, unnamed: pipeline_id and pipeline_name NULL,
-- stages in stage id order.
with source as (
    select * from {{ source('pipedrive', 'stages') }}
),

renamed as (
    select
        stage_id,
        stage_name,
        pipeline_id,
        pipeline_name,
        coalesce(order_nr, stage_id) as order_nr,
        deal_probability,
    from source
)

select * from renamed
