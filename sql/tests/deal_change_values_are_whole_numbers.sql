-- The analyses read user_id values as ids (stage_id: the CSV loader). A value that is not
-- written exactly as a whole number ('abc', '', '0x1F', ' 7', '007') stops the build rather
-- than being dropped or read as another id: DuckDB's cast accepts several of them.
-- lost_reason values may be text (the API gives a reason as its label; free-text reasons):
-- rep_lost_reasons_monthly reports those as text, and lost_reasons_given_as_text warns.
select *
from {{ ref('stg_deal_changes') }}
-- The key decides first (case): written as "key in (...) and not ...", DuckDB pushed the cast
-- into the scan, where it ran on every row of deal_changes, 7M, not on the 1.8M it checks.
where case
    when changed_field_key = 'user_id'
        then not coalesce(new_value = try_cast(new_value as bigint)::varchar, false)
    else false
end
