-- One row per step of the funnel_steps seed, beside what the export says of it: the
-- stage's name in stages.csv for a stage step, whether the activity type exists for a call
-- step, and `problem`, the reason the step does not fit the export (NULL when it does):
-- also a stage step the seed puts in another pipeline than stages.csv does (a pipeline
-- renamed in Pipedrive since `funnel steps --write`), whose counts would carry one name in
-- the funnel and another in the deal models; and the stage steps of a seed pipeline that
-- two pipelines of stages.csv share the name of (Pipedrive allows it).
-- The test funnel_steps_match_the_export (tests.toml) stops the build on any problem: a
-- seed written for another account's stages would otherwise put that account's names on
-- this one's counts. `funnel steps --write` writes the seed from the export.
with funnel_steps as (
    select * from {{ ref('funnel_steps') }}
),

stages as (
    select * from {{ ref('stg_stages') }}
),

activity_types as (
    select distinct activity_type from {{ ref('stg_activity_types') }}
),

-- The step's name after its `Step N:` prefix, lowercased: it must contain the stage's name.
steps as (
    select
        funnel_steps.funnel_step,
        funnel_steps.kpi_name,
        funnel_steps.stage_id,
        stages.stage_name,
        funnel_steps.activity_type,
        stages.stage_id is not null as has_stage,
        funnel_steps.pipeline is not null and stages.pipeline_name is not null
            and funnel_steps.pipeline <> stages.pipeline_name as other_pipeline,
        -- Pipedrive lets two pipelines share a name; the seed names pipelines, so their
        -- stages would be counted as one funnel, step 5 of one "converting" to step 6 of the other.
        funnel_steps.pipeline is not null
            and min(stages.pipeline_id) over (partition by funnel_steps.pipeline)
                <> max(stages.pipeline_id) over (partition by funnel_steps.pipeline) as shared_name,
        activity_types.activity_type is not null as has_activity_type,
        regexp_replace(lower(funnel_steps.kpi_name), '^ *step +[0-9.]+ *: *', '') as named,
    from funnel_steps
    left join stages on funnel_steps.stage_id = stages.stage_id
    left join activity_types on funnel_steps.activity_type = activity_types.activity_type
),

final as (
    select
        funnel_step,
        kpi_name,
        stage_id,
        stage_name,
        activity_type,
        -- Short, as the build shows failing values cut to 40 characters.
        case
            when stage_id is not null and not has_stage then 'no such stage: funnel steps --write'
            when stage_id is not null and position(lower(stage_name) in named) = 0 then 'name differs: funnel steps --write'
            when stage_id is not null and other_pipeline then 'pipeline differs: funnel steps --write'
            when stage_id is not null and shared_name then 'two pipelines of this name: rename one'
            when activity_type is not null and not has_activity_type then 'no such type: funnel steps --write'
        end as problem,
    from steps
)

select * from final
order by funnel_step
