-- One row per cohort month and pipeline: the deals of deals.csv whose add_time is in
-- cohort_month, by their current status, and the win rate won / (won + lost) (NULL while
-- none is closed). A deal's pipeline is the name of its current pipeline_id in stages.csv
-- (NULL when unknown). Months are calendar months in the time zone of the definition
-- timezone (UTC by default). Empty when the export has no deals.csv.
with deals as (
    select * from {{ ref('stg_deals') }}
),

stages as (
    select * from {{ ref('stg_stages') }}
),

-- One name per pipeline id, whatever the stages' rows say (the smallest, if they differ).
pipelines as (
    select
        pipeline_id,
        min(pipeline_name) as pipeline_name,
    from stages
    where pipeline_id is not null
    group by pipeline_id
),

cohorts as (
    select
        {{ month('deals.added_at') }} as cohort_month,
        pipelines.pipeline_name as pipeline,
        count(*) as deals,
        count(*) filter (where deals.status = 'won') as won,
        count(*) filter (where deals.status = 'lost') as lost,
        count(*) filter (where deals.status = 'open') as open,
    from deals
    left join pipelines on deals.pipeline_id = pipelines.pipeline_id
    group by all
),

final as (
    select
        cohort_month,
        pipeline,
        deals,
        won,
        lost,
        open,
        case when won + lost > 0 then won / (won + lost) end as win_rate,
    from cohorts
)

select * from final
order by cohort_month, pipeline nulls last
