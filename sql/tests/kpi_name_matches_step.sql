-- Every report row carries the name its step has in the funnel_steps seed.
with report as (
    select * from {{ ref('rep_sales_funnel_monthly') }}
),

funnel_steps as (
    {{ counted_steps() }}
)

select report.*
from report
left join funnel_steps on report.funnel_step = funnel_steps.funnel_step
where funnel_steps.kpi_name is distinct from report.kpi_name
