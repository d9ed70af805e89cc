{{ config(severity='warn', description='deals created twice (two lifecycles); their stage re-entries are not counted again') }}
select deal_id, count(*) as add_time_rows
from {{ ref('stg_deal_changes') }}
where changed_field_key = 'add_time'
group by deal_id
having count(*) > 1
