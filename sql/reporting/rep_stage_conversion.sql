-- One row per pair of consecutive stage steps (1 -> 2, ..., 8 -> 9) and cohort month:
-- of the deals whose first entry into from_step falls in cohort_month, how many entered
-- to_step at or after that first entry. Months where no deal entered from_step have no row.
-- Months are calendar months in the time zone of the definition timezone (UTC by default).
with funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

-- Call steps sit between stage steps in the seed; the pairs skip them (2 -> 3, not 2 -> 2.1).
step_pairs as (
    select
        funnel_step as from_step,
        stage_id as from_stage_id,
        lead(funnel_step) over (order by funnel_step) as to_step,
        lead(stage_id) over (order by funnel_step) as to_stage_id,
    from funnel_steps
    where stage_id is not null
),

-- A deal enters to_step "after" from_step if any of its entries into to_step's stage is at
-- or after its first entry into from_step: its last entry into that stage tells.
-- int_deal_stage_history is read by name on both sides: through one CTE read twice, DuckDB
-- copied its 4.5M rows first.
deal_pairs as (
    select
        step_pairs.from_step,
        step_pairs.to_step,
        {{ month('entered_from.first_entered_at') }} as cohort_month,
        coalesce(entered_to.last_entered_at >= entered_from.first_entered_at, false) as is_converted,
    from step_pairs
    inner join {{ ref('int_deal_stage_history') }} as entered_from on step_pairs.from_stage_id = entered_from.stage_id
    left join {{ ref('int_deal_stage_history') }} as entered_to
        on entered_from.deal_id = entered_to.deal_id
        and step_pairs.to_stage_id = entered_to.stage_id
    where step_pairs.to_step is not null
),

final as (
    select
        cohort_month,
        from_step,
        to_step,
        count(*) as entered,
        count(*) filter (where is_converted) as converted,
        count(*) filter (where is_converted) / count(*) as conversion_rate,
    from deal_pairs
    group by cohort_month, from_step, to_step
)

select * from final
order by cohort_month, from_step
