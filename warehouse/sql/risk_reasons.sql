-- The reasons of every risk_scores row in words, one row per (ra, year, task): the reasons that
-- raised the risk, most important first, each as "description = value" (the words are the
-- comments of feature_base's columns: warehouse/sql/descriptions.yaml and features/featuresets.py).
-- at_risk and call_list both read their words here, so they word a student alike.
create or replace view risk_reasons as
with
parsed as (
    select
        ra,
        year,
        task,
        from_json(
            coalesce(reasons, '[]'), '[{"feature": "VARCHAR", "value": "JSON", "contribution": "DOUBLE"}]'
        ) as items
    from risk_scores
),
items as (
    select ra, year, task, unnest(items) as item, generate_subscripts(items, 1) as position
    from parsed
),
glossary as (
    select column_name as feature, comment as words
    from duckdb_columns()
    where database_name = current_database() and schema_name = 'main' and table_name = 'feature_base'
),
worded as (
    select
        i.ra,
        i.year,
        i.task,
        string_agg(
            coalesce(g.words, i.item.feature) || ' = ' || case
                when i.item.value is null or json_type(i.item.value) = 'NULL' then 'unknown'
                when json_type(i.item.value) = 'VARCHAR' then i.item.value ->> '$'
                else round(try_cast(i.item.value as double), 2)::varchar
            end,
            '; '
            order by i.position
        ) as reasons
    from items as i
    left join glossary as g on g.feature = i.item.feature
    where i.item.contribution > 0
    group by i.ra, i.year, i.task
),
final as (
    select r.ra, r.year, r.task, coalesce(w.reasons, '') as reasons
    from risk_scores as r
    left join worded as w on w.ra = r.ra and w.year = r.year and w.task = r.task
)
select * from final;
