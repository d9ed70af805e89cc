-- Every report row counts at least one deal; with the definition zero_fill = true the
-- months and steps without deals are rows of 0, never negative.
select *
from {{ ref('rep_sales_funnel_monthly') }}
where not coalesce(deals_count {{ '>=' if var('zero_fill', false) else '>' }} 0, false)
