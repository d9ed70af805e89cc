{{ config(severity='warn', description="lost reasons that are text, not an option id of the lost_reason field (a free-text reason, or an option deleted since): reported by their text with lost_reason_id NULL; deals_count says how many deals each row holds") }}
select month, lost_reason, last_funnel_step, deals_count
from {{ ref('rep_lost_reasons_monthly') }}
where lost_reason_id is null
