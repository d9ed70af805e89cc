-- One row per deal field of the export, with the options of its enumerated values
-- (FIELD_VALUE_OPTIONS: a JSON array of {"id": ..., "label": ...}).
with source as (
    select * from {{ source('pipedrive', 'fields') }}
),

renamed as (
    select
        "ID" as field_id,
        "FIELD_KEY" as field_key,
        "NAME" as field_name,
        "FIELD_VALUE_OPTIONS" as value_options,
    from source
)

select * from renamed
