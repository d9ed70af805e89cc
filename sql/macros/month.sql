{#- Macros every model and SQL test may call by name. -#}

{#- The calendar month (a date: its first day) of a UTC timestamp, in the time zone of the
    definition `timezone` (README, "Definitions"; UTC by default). -#}
{%- macro month(ts) -%}
{%- set tz = var('timezone', 'UTC') -%}
{%- if tz == 'UTC' -%}
date_trunc('month', {{ ts }})::date
{%- else -%}
date_trunc('month', timezone('{{ tz }}', timezone('UTC', {{ ts }})))::date
{%- endif -%}
{%- endmacro %}

{#- The last instant of a month (23:59:59.999999 of its last day in the time zone of the
    definition `timezone`) as a UTC timestamp, comparable with the export's timestamps.
    `month_start` is a date: the month's first day. -#}
{%- macro month_end_at(month_start) -%}
{%- set tz = var('timezone', 'UTC') -%}
{%- if tz == 'UTC' -%}
({{ month_start }} + interval 1 month - interval 1 microsecond)
{%- else -%}
timezone('UTC', timezone('{{ tz }}', {{ month_start }} + interval 1 month - interval 1 microsecond))
{%- endif -%}
{%- endmacro %}
