-- For analysts: the students flagged at high risk in the latest scored year, one row per student,
-- with level, school type, the flagging model's reasons in words (from the view risk_reasons, as
-- the call list's) and the served variant that scored each task.
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
        max(variant) filter (where task = 'current') as variant_now,
        max(variant) filter (where task = 'next_year') as variant_next_year,
        max(segment) filter (where task = 'next_year') as segment_next_year,
        coalesce(bool_or(task = 'current' and risk_label = 'high'), false) as now_high,
        coalesce(bool_or(task = 'next_year' and risk_label = 'high'), false) as next_high
    from scored
    group by ra, year
    having now_high or next_high
),
chosen as (
    -- the reasons of the current task when it flags the student, else those of next_year
    select f.*, s.model_version, w.reasons
    from flagged as f
    inner join scored as s
        on s.ra = f.ra and s.year = f.year and s.task = case when f.now_high then 'current' else 'next_year' end
    inner join risk_reasons as w on w.ra = s.ra and w.year = s.year and w.task = s.task
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
        c.reasons,
        c.model_version,
        c.variant_now,
        c.variant_next_year,
        c.segment_next_year
    from chosen as c
    left join students as st on st.ra = c.ra and st.year = c.year
)
select * from final
order by greatest(coalesce(risk_now, 0), coalesce(risk_next_year, 0)) desc, ra;
