-- Deals per funnel step and calendar month. One pipeline: the var pipeline (default: the
-- first pipeline of the funnel_steps seed; a seed without a pipeline column is one
-- pipeline). By default stage steps count a deal in the month of its first ever entry into
-- the stage; call steps count distinct deals with a done call of that type per month of its
-- due date; months without deals have no row. rep_pipeline_funnel_monthly counts every
-- pipeline the same way (what counts, the definitions and the calls of several pipelines
-- are explained there); this report is its rows for the chosen pipeline.
with pipeline_funnel as (
    select * from {{ ref('rep_pipeline_funnel_monthly') }}
),

final as (
    select
        month,
        kpi_name,
        funnel_step,
        deals_count,
    from pipeline_funnel
    {%- if var('pipeline', none) is not none %}
    where pipeline = '{{ var('pipeline') | replace("'", "''") }}'
    {%- endif %}
)

select * from final
order by month, funnel_step
