{{ config(severity='warn', description='activities whose deal_id has no row in deal_changes; they still count as calls') }}
with activities as (
    select * from {{ ref('stg_activity') }}
),

deals as (
    select distinct deal_id from {{ ref('stg_deal_changes') }}
)

select activities.*
from activities
left join deals on activities.deal_id = deals.deal_id
where activities.deal_id is not null
    and deals.deal_id is null
