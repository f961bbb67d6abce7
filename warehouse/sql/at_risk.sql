-- For analysts: the students flagged at high risk in the latest scored year, one row per student,
-- with level, school type and the model's top reasons in words (the words are the comments of
-- feature_base's columns: warehouse/sql/descriptions.yaml and features/featuresets.py).
create or replace view at_risk as
with
latest as (
    select max(year) as year from risk_scores
),
scored as (
    select r.*
    from risk_scores as r
    inner join latest as l on r.year = l.year
),
flagged as (
    select
        ra,
        year,
        max(risk_score) filter (where task = 'current') as risk_now,
        max(risk_score) filter (where task = 'next_year') as risk_next_year,
        coalesce(bool_or(task = 'current' and risk_label = 'high'), false) as now_high,
        coalesce(bool_or(task = 'next_year' and risk_label = 'high'), false) as next_high
    from scored
    group by ra, year
    having now_high or next_high
),
chosen as (
    -- the reasons of the current task when it flags the student, else those of next_year
    select
        f.*,
        s.model_version,
        from_json(
            coalesce(s.reasons, '[]'), '[{"feature": "VARCHAR", "value": "JSON", "contribution": "DOUBLE"}]'
        ) as items
    from flagged as f
    inner join scored as s
        on s.ra = f.ra and s.year = f.year and s.task = case when f.now_high then 'current' else 'next_year' end
),
items as (
    select ra, unnest(items) as item, generate_subscripts(items, 1) as position
    from chosen
),
glossary as (
    select column_name as feature, comment as words
    from duckdb_columns()
    where database_name = current_database() and schema_name = 'main' and table_name = 'feature_base'
),
worded as (
    select
        i.ra,
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
    group by i.ra
),
final as (
    select
        c.year,
        c.ra,
        case when st.fase is null then 'unknown' when st.fase = 0 then 'ALFA' else 'Fase ' || st.fase end as level,
        case st.instituicao
            when 'publica' then 'public school'
            when 'privada_bolsa' then 'private school on a scholarship (the programme or a partner)'
            when 'privada' then 'private school'
            when 'universidade' then 'university'
            when 'concluiu' then 'finished secondary school'
            when 'outra' then 'other'
            else 'unknown'
        end as school_type,
        case
            when c.now_high and c.next_high then 'both'
            when c.now_high then 'current'
            else 'next_year'
        end as flagged_by,
        c.risk_now,
        c.risk_next_year,
        coalesce(w.reasons, '') as reasons,
        c.model_version
    from chosen as c
    left join students as st on st.ra = c.ra and st.year = c.year
    left join worded as w on w.ra = c.ra
)
select * from final
order by greatest(coalesce(risk_now, 0), coalesce(risk_next_year, 0)) desc, ra;
