-- Lost deals per month, reason and the funnel step they were lost at. A deal counts once,
-- with its latest lost_reason row: month is that row's month; a value written as a whole
-- number is an option id, lost_reason its label in the options of the lost_reason field
-- (NULL when the id has none); any other value (a free-text reason, a deleted option the API
-- gave as its label) is reported as it is, with lost_reason_id NULL (a warn test counts
-- them: lost_reasons_given_as_text); and last_funnel_step the step of the deal's latest stage entry at or before the loss (NULL
-- when there is none, or when that stage is no funnel step).
-- Ties: rows of a deal with the same change_time are ordered by their value (the id, then
-- the text), the larger one counting as the later change.
-- Months are calendar months in the time zone of the definition timezone (UTC by default).
with stage_entries as (
    select * from {{ ref('int_stage_entries') }}
),

fields as (
    select * from {{ ref('stg_fields') }}
),

-- The chosen pipeline's steps (the var pipeline, sql/macros/pipelines.sql).
funnel_steps as (
    {{ counted_steps() }}
),

-- stg_deal_changes is read here only: a CTE read twice would be materialized whole.
latest_reasons as (
    select
        deal_id,
        max(changed_at) as lost_at,
        arg_max(new_value, (changed_at, try_cast(new_value as bigint), new_value)) as reason,
    from {{ ref('stg_deal_changes') }}
    where changed_field_key = 'lost_reason' and {{ in_pipeline('deal_id') }}
    group by deal_id
),

-- An id is written exactly as a whole number ('7', not '07' or ' 7', which DuckDB's cast
-- would also read as 7): anything else is text.
losses as (
    select
        deal_id,
        lost_at,
        case when reason = try_cast(reason as bigint)::varchar then try_cast(reason as bigint) end as lost_reason_id,
        reason,
    from latest_reasons
),

-- The latest stage entry at or before the loss: the one whose next entry is after it (or
-- that has none). Of entries at the same instant the one with the larger stage id is the
-- later change (int_stage_entries).
last_stages as (
    select
        losses.deal_id,
        stage_entries.stage_id,
    from losses
    inner join stage_entries
        on losses.deal_id = stage_entries.deal_id
        and stage_entries.changed_at <= losses.lost_at
        and coalesce(stage_entries.next_entered_at, 'infinity'::timestamp) > losses.lost_at
),

-- Option ids are JSON strings or numbers; both read as text, compared with the id's text.
lost_reason_labels as (
    select
        option ->> '$.id' as option_id,
        option ->> '$.label' as label,
    from (
        select unnest(json_extract(value_options, '$[*]')) as option
        from fields
        where field_key = 'lost_reason'
    )
),

final as (
    select
        {{ month('losses.lost_at') }} as month,
        losses.lost_reason_id,
        case when losses.lost_reason_id is null then losses.reason else lost_reason_labels.label end as lost_reason,
        funnel_steps.funnel_step as last_funnel_step,
        count(*) as deals_count,
    from losses
    left join last_stages on losses.deal_id = last_stages.deal_id
    left join funnel_steps on last_stages.stage_id = funnel_steps.stage_id
    left join lost_reason_labels on losses.lost_reason_id::varchar = lost_reason_labels.option_id
    group by all
)

select * from final
order by month, lost_reason_id nulls last, lost_reason, last_funnel_step nulls first
