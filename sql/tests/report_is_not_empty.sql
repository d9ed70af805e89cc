{{ config(severity='warn', description='the report has no rows; is deal_changes.csv empty?') }}
select 'no rows' as problem
where not exists (select 1 from {{ ref('rep_sales_funnel_monthly') }})
