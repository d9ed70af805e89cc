-- The analyses read user_id and lost_reason values as ids (stage_id: the CSV loader). A value that is not
-- written exactly as a whole number ('abc', '', '0x1F', ' 7', '007') stops the build rather
-- than being dropped or read as another id: DuckDB's cast accepts several of them.
select *
from {{ ref('stg_deal_changes') }}
where changed_field_key in ('user_id', 'lost_reason')
    and not coalesce(new_value = try_cast(new_value as bigint)::varchar, false)
