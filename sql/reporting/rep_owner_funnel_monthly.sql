-- The monthly funnel per owner. Stage steps: each entry the main report counts (the
-- definitions stage_entry and backfill_skipped_stages choose them, sql/macros/step_entries.sql:
-- per deal, step and month the earliest counted entry) is credited to the deal's owner at
-- that moment: the owner set by its latest user_id row at or before the entry, or, if there
-- is none yet, by its earliest user_id row; NULL when the deal has no user_id row. So, per
-- month and stage step, the owners' counts add up to the report's under every definition.
-- Call steps: distinct deals per month and the user the call is assigned to; with
-- call_months = "first", once per deal and call step, in the month of its earliest call, for
-- that call's user (of calls at the same instant, the smaller user id's).
-- Ties: user_id rows of a deal with the same change_time are ordered by the user id, the
-- larger one counting as the later change.
-- Months are calendar months in the time zone of the definition timezone (UTC by default).
with deal_changes as (
    select * from {{ ref('stg_deal_changes') }}
),

step_entries as (
    {{ step_entries() }}
),

-- The activities each call step counts (with several pipelines, its pipeline's deals only).
step_calls as (
    {{ step_calls() }}
),

-- The chosen pipeline's steps (the var pipeline, sql/macros/pipelines.sql).
funnel_steps as (
    {{ counted_steps() }}
),

users as (
    select * from {{ ref('stg_users') }}
),

-- A non-numeric new_value stops the build (test deal_change_values_are_whole_numbers).
owner_changes as (
    select
        deal_id,
        changed_at,
        try_cast(new_value as bigint) as owner_id,
    from deal_changes
    where changed_field_key = 'user_id'
),

-- Each owner row holds from its change_time until the deal's next owner row, and the
-- earliest one also before it, so every counted entry falls in exactly one interval. Of two
-- rows at the same instant the earlier one (smaller id) holds for no time.
owner_intervals as (
    select
        deal_id,
        owner_id,
        case when row_number() over deal_order = 1 then '-infinity'::timestamp else changed_at end as valid_from,
        coalesce(lead(changed_at) over deal_order, 'infinity'::timestamp) as valid_until,
    from owner_changes
    window deal_order as (partition by deal_id order by changed_at, owner_id)
),

stage_credits as (
    select
        step_entries.month,
        owner_intervals.owner_id,
        step_entries.funnel_step,
        count(*) as deals_count,
    from step_entries
    left join owner_intervals
        on step_entries.deal_id = owner_intervals.deal_id
        and step_entries.entered_at >= owner_intervals.valid_from
        and step_entries.entered_at < owner_intervals.valid_until
    group by all
),
{%- if var('call_months', 'every') == 'every' %}

call_credits as (
    select
        {{ month('due_at') }} as month,
        user_id as owner_id,
        funnel_step,
        count(distinct deal_id) as deals_count,
    from step_calls
    group by all
),
{%- else %}

first_calls as (
    select
        deal_id,
        user_id,
        due_at,
        funnel_step,
        row_number() over (
            partition by deal_id, funnel_step
            order by due_at nulls last, user_id nulls last
        ) as call_rank,
    from step_calls
),

call_credits as (
    select
        {{ month('due_at') }} as month,
        user_id as owner_id,
        funnel_step,
        count(*) as deals_count,
    from first_calls
    where call_rank = 1
    group by all
),
{%- endif %}

credited as (
    select * from stage_credits
    union all
    select * from call_credits
),

final as (
    select
        credited.month,
        credited.owner_id,
        users.user_name as owner_name,
        funnel_steps.kpi_name,
        credited.funnel_step,
        credited.deals_count,
    from credited
    inner join funnel_steps on credited.funnel_step = funnel_steps.funnel_step
    left join users on credited.owner_id = users.user_id
    where credited.deals_count > 0
)

select * from final
order by month, funnel_step, owner_id nulls last
