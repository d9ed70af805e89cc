-- One row per pipeline and outcome (won, lost): how long closed deals took, in days from
-- add_time to won_time or lost_time (seconds / 86400), over the deals of deals.csv whose
-- current status is that outcome. median_days and p75_days are continuous quantiles;
-- avg_days is summed in whole microseconds so it does not depend on the order of addition.
-- A deal's pipeline is its current pipeline_id's name in stages.csv (NULL when unknown).
-- Empty when the export has no deals.csv.
with deals as (
    select * from {{ ref('stg_deals') }}
),

stages as (
    select * from {{ ref('stg_stages') }}
),

pipelines as (
    select
        pipeline_id,
        min(pipeline_name) as pipeline_name,
    from stages
    where pipeline_id is not null
    group by pipeline_id
),

closed as (
    select
        pipelines.pipeline_name as pipeline,
        deals.status as outcome,
        epoch((case deals.status when 'won' then deals.won_at else deals.lost_at end) - deals.added_at) / 86400
            as cycle_days,
    from deals
    left join pipelines on deals.pipeline_id = pipelines.pipeline_id
    where deals.status in ('won', 'lost')
),

final as (
    select
        pipeline,
        outcome,
        count(*) as deals,
        quantile_cont(cycle_days, 0.5) as median_days,
        quantile_cont(cycle_days, 0.75) as p75_days,
        cast(sum(cast(round(cycle_days * 86400000000) as decimal(38, 0))) as double)
            / count(*) / 86400000000 as avg_days,
    from closed
    group by pipeline, outcome
)

select * from final
order by pipeline nulls last, outcome desc
