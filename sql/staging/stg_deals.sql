-- One row per deal of deals.csv, as it stands at export time: owner, pipeline, stage,
-- status (open, won or lost), value and its currency, when it was added, won or lost, its
-- expected close date and its own win probability (NULL: the stage's). An export without
-- deals.csv (an optional file) gives no rows, and the models on deals build empty.
with source as (
    select * from {{ source('pipedrive', 'deals') }}
),

renamed as (
    select
        deal_id,
        owner_id,
        pipeline_id,
        stage_id,
        status::varchar as status,
        value,
        currency,
        add_time as added_at,
        won_time as won_at,
        lost_time as lost_at,
        expected_close_date,
        probability,
    from source
)

select * from renamed
