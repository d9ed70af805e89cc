-- A call type is one step of its pipeline: counted by two steps, its deals would count twice.
select pipeline, activity_type, count(*) as steps
from {{ ref('funnel_steps') }}
where activity_type is not null
group by pipeline, activity_type
having count(*) > 1
