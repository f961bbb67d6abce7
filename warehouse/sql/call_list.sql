-- Whom to call: the latest scored year's students in two categories, each ranked by risk.
-- "behind now" is a fact from the sheet (defasagem < 0); "newly at risk" is a prediction: an
-- on-track student (defasagem >= 0) whom the next_year model labels high. Reasons are the
-- next_year model's, in words (from the view risk_reasons, as at_risk's).
create or replace view call_list as
with
latest as (
    select max(year) as year from risk_scores where task = 'next_year'
),
scored as (
    select r.*
    from risk_scores as r
    inner join latest as l on r.year = l.year
    where r.task = 'next_year'
),
categorised as (
    select
        st.ra,
        st.year,
        st.fase,
        st.turma,
        st.defasagem,
        s.risk_score,
        s.risk_label,
        s.model_version,
        s.variant,
        s.segment,
        s.scored_at,
        case
            when st.defasagem < 0 then 'behind now'
            when st.defasagem >= 0 and s.risk_label = 'high' then 'newly at risk'
        end as category
    from students as st
    inner join latest as l on st.year = l.year
    left join scored as s on s.ra = st.ra
),
listed as (
    select * from categorised where category is not null
),
final as (
    select
        c.category,
        row_number() over (
            partition by c.category order by c.risk_score desc nulls last, c.defasagem, c.ra
        ) as rank,
        c.ra,
        c.year,
        case when c.fase is null then 'unknown' when c.fase = 0 then 'ALFA' else 'Fase ' || c.fase end as level,
        c.turma,
        c.defasagem,
        c.risk_score,
        coalesce(c.risk_label, 'not scored') as risk_label,
        coalesce(w.reasons, '') as reasons,
        c.model_version,
        c.variant,
        c.segment,
        c.scored_at
    from listed as c
    left join risk_reasons as w on w.ra = c.ra and w.year = c.year and w.task = 'next_year'
)
select * from final
order by category = 'newly at risk' desc, rank;
