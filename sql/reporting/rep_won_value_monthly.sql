-- One row per month, pipeline and currency: the deals of deals.csv won in that month (by
-- won_time), their value and average value. Money is never summed across currencies.
-- avg_won_value is won_value / won_deals rounded half away from zero to cents, in exact
-- whole cents (a DECIMAL divided in DuckDB is a DOUBLE). A deal's pipeline is its current
-- pipeline_id's name in stages.csv (NULL when unknown). Months are calendar months in the
-- time zone of the definition timezone. Empty when the export has no deals.csv.
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

won as (
    select
        {{ month('deals.won_at') }} as month,
        pipelines.pipeline_name as pipeline,
        deals.currency,
        count(*) as won_deals,
        sum(cast(deals.value * 100 as bigint)) as won_cents,
    from deals
    left join pipelines on deals.pipeline_id = pipelines.pipeline_id
    where deals.status = 'won'
    group by all
),

final as (
    select
        month,
        pipeline,
        currency,
        won_deals,
        cast(cast(won_cents as decimal(20, 0)) * 0.01 as decimal(18, 2)) as won_value,
        -- half away from zero, in whole numbers: (2|c| + n) // 2n is |c| / n rounded up at
        -- exactly one half; the sign is put back
        cast(cast(
            case
                when won_cents < 0 then -((2 * -won_cents + won_deals) // (2 * won_deals))
                else (2 * won_cents + won_deals) // (2 * won_deals)
            end as decimal(20, 0)) * 0.01 as decimal(18, 2)) as avg_won_value,
    from won
)

select * from final
order by month, pipeline nulls last, currency
