{#- The stage entries the funnel counts, under the definitions stage_entry and
    backfill_skipped_stages (README, "Definitions"): one row per deal, stage step and month
    in which the deal counts for the step, with the earliest counted entry of that month:
    (deal_id, funnel_step, month, entered_at, pipeline). Every model that counts stage
    entries reads them here (rep_pipeline_funnel_monthly, rep_owner_funnel_monthly, ...), so
    that they count the same deals. The steps are the chosen pipeline's (the var pipeline,
    sql/macros/pipelines.sql), or every pipeline's with all_pipelines=true.
    Use it as a CTE: `step_entries as ({{ step_entries() }}),`. -#}

{%- macro step_entries(all_pipelines=false) -%}
{%- set steps = '(' ~ counted_steps(all_pipelines) ~ ')' -%}
{%- set stage_entry = var('stage_entry', 'first') -%}
{%- if stage_entry == 'first' and not var('backfill_skipped_stages', false) -%}
    -- int_deal_stage_history has one row per deal and stage, and each stage feeds one step
    -- (tests on funnel_steps): one row per deal and step.
    select
        stage_history.deal_id,
        funnel_steps.funnel_step,
        {{ month('stage_history.first_entered_at') }} as month,
        stage_history.first_entered_at as entered_at,
        funnel_steps.pipeline,
    from {{ ref('int_deal_stage_history') }} as stage_history
    inner join {{ steps }} as funnel_steps on stage_history.stage_id = funnel_steps.stage_id
{%- elif stage_entry == 'first' -%}
    -- backfill_skipped_stages: a deal passed through stage step S no later than its earliest
    -- entry into S or any later stage step, so that entry counts for S too.
    select
        deal_id,
        funnel_step,
        {{ month('entered_at') }} as month,
        entered_at,
        pipeline,
    from (
        select
            step_firsts.deal_id,
            stage_steps.funnel_step,
            stage_steps.pipeline,
            min(step_firsts.first_entered_at) as entered_at,
        from (
            select
                stage_history.deal_id,
                funnel_steps.funnel_step,
                funnel_steps.pipeline,
                stage_history.first_entered_at,
            from {{ ref('int_deal_stage_history') }} as stage_history
            inner join {{ steps }} as funnel_steps on stage_history.stage_id = funnel_steps.stage_id
        ) as step_firsts
        inner join (
            select funnel_step, pipeline from {{ steps }} as funnel_steps where stage_id is not null
        ) as stage_steps
            on stage_steps.funnel_step <= step_firsts.funnel_step
            and stage_steps.pipeline is not distinct from step_firsts.pipeline
        group by step_firsts.deal_id, stage_steps.funnel_step, stage_steps.pipeline
    ) as backfilled
{%- else -%}
    -- Every entry into a stage, with the step it feeds (stage ids are whole numbers: the CSV
    -- loader checks them); `every` counts each, `first_per_lifecycle` the first of each
    -- lifecycle: a deal's k-th add_time row starts its k-th lifecycle; an entry belongs to
    -- the latest lifecycle started at or before it (add_time rows at the same instant come
    -- first), entries before the first add_time to the first lifecycle.
    select
        deal_id,
        funnel_step,
        {{ month('changed_at') }} as month,
        min(changed_at) as entered_at,
        pipeline,
    from (
{%- if stage_entry == 'every' %}
        select
            stage_entries.deal_id,
            stage_entries.changed_at,
            funnel_steps.funnel_step,
            funnel_steps.pipeline,
        from {{ ref('int_stage_entries') }} as stage_entries
        inner join {{ steps }} as funnel_steps on stage_entries.stage_id = funnel_steps.stage_id
{%- else %}
        select
            deal_id,
            min(changed_at) as changed_at,
            funnel_step,
            pipeline,
        from (
            select
                deal_id,
                changed_at,
                funnel_step,
                pipeline,
                is_start,
                greatest(
                    count(*) filter (where is_start) over (
                        partition by deal_id
                        order by changed_at, is_start desc
                        rows between unbounded preceding and current row
                    ),
                    1
                ) as lifecycle,
            from (
                select
                    stage_entries.deal_id,
                    stage_entries.changed_at,
                    funnel_steps.funnel_step,
                    funnel_steps.pipeline,
                    false as is_start,
                from {{ ref('int_stage_entries') }} as stage_entries
                inner join {{ steps }} as funnel_steps on stage_entries.stage_id = funnel_steps.stage_id
                union all
                select deal_id, changed_at, null as funnel_step, null as pipeline, true as is_start
                from {{ ref('stg_deal_changes') }}
                where changed_field_key = 'add_time'
            ) as events
        ) as numbered_entries
        where not is_start
        group by deal_id, funnel_step, pipeline, lifecycle
{%- endif %}
    ) as counted_entries
    group by all
{%- endif -%}
{%- endmacro %}
