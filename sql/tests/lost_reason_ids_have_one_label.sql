-- An id listed twice in the options of the lost_reason field would name (and count) its
-- deals twice in rep_lost_reasons_monthly.
with fields as (
    select * from {{ ref('stg_fields') }}
),

options as (
    select unnest(json_extract(value_options, '$[*]')) as option
    from fields
    where field_key = 'lost_reason'
)

select option ->> '$.id' as option_id, count(*) as times_listed
from options
group by option_id
having count(*) > 1
