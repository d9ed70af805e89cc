-- Activities marked done, with the name of their type; with the definition
-- calls = "all" (README "Definitions") every activity, done or not.
with activities as (
    select * from {{ ref('stg_activity') }}
),

activity_types as (
    select * from {{ ref('stg_activity_types') }}
),

completed as (
    select
        activities.activity_id,
        activities.deal_id,
        activities.user_id,
        activities.activity_type,
        activity_types.activity_type_name,
        activities.due_at,
    from activities
    left join activity_types on activities.activity_type = activity_types.activity_type
    {%- if var('calls', 'done') == 'done' %}
    where activities.is_done
    {%- endif %}
)

select * from completed
