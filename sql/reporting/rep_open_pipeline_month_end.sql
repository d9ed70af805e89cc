-- One row per month end, pipeline, funnel step and currency: the deals open at the month's
-- last instant (23:59:59.999999 of its last day, in the time zone of the definition
-- timezone) and their value. A deal counts at a month end when it was added at or before
-- it and neither won nor lost by then (won_time and lost_time after it, or NULL); it is
-- counted in the stage of its latest stage entry at or before that instant (deal_changes;
-- entries at the same instant: the larger stage id is the later), under that stage's step
-- and pipeline. Deals with no stage entry by then are left out. open_value is the deals'
-- current value; weighted_value sums each deal's value x (its probability, else the
-- stage's deal_probability, else 100) / 100, rounded half away from zero to cents per deal,
-- in exact whole cents. Month ends run from the month of the earliest add_time in
-- deals.csv to the month of the latest change_time in deal_changes.csv. Money is never
-- summed across currencies. Empty when the export has no deals.csv.
with deals as (
    select * from {{ ref('stg_deals') }}
),

deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),

stage_entries as (
    select * from {{ ref('int_stage_entries') }}
),

stages as (
    select * from {{ ref('stg_stages') }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

bounds as (
    select
        {{ month('(select min(added_at) from deals)') }} as first_month,
        {{ month('(select max(changed_at) from deal_changes)') }} as last_month,
),

-- The cast to date is a step of its own: Spark refuses a generator inside an expression.
month_starts as (
    select unnest(generate_series(first_month, last_month, interval 1 month)) as month_start
    from bounds
    where first_month is not null and last_month is not null
),

months as (
    select cast(month_start as date) as month
    from month_starts
),

month_ends as (
    select
        (month + interval 1 month - interval 1 day)::date as month_end,
        {{ month_end_at('month') }} as month_end_at,
    from months
),

-- Each entry holds from its instant until the deal's next entry (int_stage_entries orders
-- entries at the same instant by stage id, so the earlier of them holds for no time).
-- Only deals of deals.csv: the others have no value.
held as (
    select
        stage_entries.deal_id,
        stage_entries.stage_id,
        stage_entries.changed_at,
        coalesce(stage_entries.next_entered_at, timestamp '9999-12-31 23:59:59') as next_entered_at,
    from stage_entries
    semi join deals on stage_entries.deal_id = deals.deal_id
),

open_at_month_end as (
    select
        month_ends.month_end,
        held.stage_id,
        deals.currency,
        deals.value,
        -- value x probability / 100 in whole cents, half away from zero
        cast(deals.value * 100 as bigint)
            * coalesce(deals.probability, stages.deal_probability, 100) as weighted_cents_x100,
    from held
    inner join month_ends
        on held.changed_at <= month_ends.month_end_at
        and held.next_entered_at > month_ends.month_end_at
    inner join deals
        on held.deal_id = deals.deal_id
    left join stages
        on held.stage_id = stages.stage_id
    where deals.added_at <= month_ends.month_end_at
        and (deals.won_at is null or deals.won_at > month_ends.month_end_at)
        and (deals.lost_at is null or deals.lost_at > month_ends.month_end_at)
),

final as (
    select
        open_at_month_end.month_end,
        stages.pipeline_name as pipeline,
        funnel_steps.funnel_step,
        funnel_steps.kpi_name,
        open_at_month_end.currency,
        count(*) as open_deals,
        cast(sum(open_at_month_end.value) as decimal(18, 2)) as open_value,
        cast(cast(sum(
            case
                when weighted_cents_x100 < 0 then -((-weighted_cents_x100 + 50) // 100)
                else (weighted_cents_x100 + 50) // 100
            end) as decimal(20, 0)) * 0.01 as decimal(18, 2)) as weighted_value,
    from open_at_month_end
    left join stages on open_at_month_end.stage_id = stages.stage_id
    left join funnel_steps on open_at_month_end.stage_id = funnel_steps.stage_id
    group by all
)

select * from final
order by month_end, pipeline nulls last, funnel_step nulls last, currency
