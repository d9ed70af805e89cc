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
