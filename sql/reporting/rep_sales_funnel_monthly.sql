-- Deals per funnel step and calendar month. Stage steps count a deal in the month of its
-- first ever entry into the stage; call steps count distinct deals with a done call of
-- that type per month of its due date. Months without deals have no row.
with stage_history as (
    select * from {{ ref('int_deal_stage_history') }}
),

completed_activities as (
    select * from {{ ref('int_completed_activities') }}
),

funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

-- int_deal_stage_history has one row per deal and stage, and each stage feeds one step
-- (tests on funnel_steps), so counting rows counts distinct deals here.
stage_counts as (
    select
        date_trunc('month', stage_history.first_entered_at)::date as month,
        funnel_steps.funnel_step,
        count(*) as deals_count,
    from stage_history
    inner join funnel_steps on stage_history.stage_id = funnel_steps.stage_id
    group by all
),

-- A deal may have several done calls of a type in a month: count it once.
activity_counts as (
    select
        date_trunc('month', completed_activities.due_at)::date as month,
        funnel_steps.funnel_step,
        count(distinct completed_activities.deal_id) as deals_count,
    from completed_activities
    inner join funnel_steps on completed_activities.activity_type = funnel_steps.activity_type
    group by all
),

counted as (
    select * from stage_counts
    union all
    select * from activity_counts
),

final as (
    select
        counted.month,
        funnel_steps.kpi_name,
        counted.funnel_step,
        counted.deals_count,
    from counted
    inner join funnel_steps on counted.funnel_step = funnel_steps.funnel_step
    where counted.deals_count > 0
)

select * from final
order by month, funnel_step
