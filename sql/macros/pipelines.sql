{#- Pipelines (README, "The funnel"): funnel_steps.csv may name each step's pipeline. The
    var `pipeline` (default: the seed's first pipeline, set by funnel; unset for a seed
    without a pipeline column) chooses the one rep_sales_funnel_monthly and the analyses
    count; rep_pipeline_funnel_monthly counts every one (all_pipelines=true). -#}

{#- The steps counted: the chosen pipeline's, or every step. -#}
{%- macro counted_steps(all_pipelines=false) -%}
{%- set pipeline = var('pipeline', none) -%}
select * from {{ ref('funnel_steps') }}
{%- if pipeline is not none and not all_pipelines %}
where pipeline = '{{ pipeline | replace("'", "''") }}'
{%- endif -%}
{%- endmacro %}

{#- Where the steps name more than one pipeline: (pipeline, deal_id) of the deals that ever
    entered a stage of a stage step of that pipeline. A call step counts only these deals
    of its pipeline, and the analyses of one pipeline only its deals. With one pipeline
    (or none named) every deal belongs to it, as before pipelines. -#}
{%- macro pipeline_deals() -%}
select distinct
    funnel_steps.pipeline,
    stage_history.deal_id,
from {{ ref('int_deal_stage_history') }} as stage_history
inner join {{ ref('funnel_steps') }} as funnel_steps on stage_history.stage_id = funnel_steps.stage_id
{%- endmacro %}

{#- True when the steps name more than one pipeline (a SQL boolean). -#}
{%- macro several_pipelines() -%}
((select count(distinct pipeline) from {{ ref('funnel_steps') }}) > 1)
{%- endmacro %}

{#- The activities each call step counts: (deal_id, user_id, due_at, pipeline, funnel_step),
    from int_completed_activities (the definition calls chooses done or all); with several
    pipelines only those of deals of the step's pipeline. -#}
{%- macro step_calls(all_pipelines=false) -%}
    select
        completed_activities.deal_id,
        completed_activities.user_id,
        completed_activities.due_at,
        call_steps.pipeline,
        call_steps.funnel_step,
    from {{ ref('int_completed_activities') }} as completed_activities
    inner join ({{ counted_steps(all_pipelines) }}) as call_steps
        on completed_activities.activity_type = call_steps.activity_type
    left join ({{ pipeline_deals() }}) as pipeline_deals
        on completed_activities.deal_id = pipeline_deals.deal_id
        and call_steps.pipeline = pipeline_deals.pipeline
    where pipeline_deals.deal_id is not null or not {{ several_pipelines() }}
{%- endmacro %}

{#- A SQL boolean: the deal `deal_id` belongs to the chosen pipeline (it ever entered a stage
    of one of its stage steps). Always true with one pipeline. -#}
{%- macro in_pipeline(deal_id) -%}
{%- set pipeline = var('pipeline', none) -%}
{%- if pipeline is none -%}
true
{%- else -%}
(not {{ several_pipelines() }} or {{ deal_id }} in (
    select pipeline_deals.deal_id from ({{ pipeline_deals() }}) as pipeline_deals
    where pipeline_deals.pipeline = '{{ pipeline | replace("'", "''") }}'
))
{%- endif -%}
{%- endmacro %}
