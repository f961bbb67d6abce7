-- Model inputs of the `next_year` task (behind next year, from this year's data).
-- One row per student-year; `target` is known when the student appears in the following year.
create or replace view features_next_year as
with
students as (
    select * from students
),
previous_year as (
    select ra, year + 1 as year, defasagem as prev_defasagem, inde as prev_inde, ida as prev_ida
    from students
),
following_year as (
    select ra, year - 1 as year, defasagem as next_defasagem
    from students
),
final as (
    select
        s.ra,
        s.year,
        s.fase::double as fase,
        s.idade::double as idade,
        (s.idade - s.fase)::double as idade_menos_fase,
        greatest(s.year - s.ano_ingresso, 0)::double as anos_no_programa,
        s.genero,
        s.instituicao,
        s.iaa, s.ieg, s.ips, s.ipp, s.ida, s.ipv,
        s.mat, s.por, s.ing,
        p.prev_defasagem::double as prev_defasagem,
        p.prev_inde,
        p.prev_ida,
        s.defasagem::double as defasagem,
        s.ian,
        s.inde,
        case when n.next_defasagem is null then null else (n.next_defasagem < 0)::double end as target
    from students as s
    left join previous_year as p on p.ra = s.ra and p.year = s.year
    left join following_year as n on n.ra = s.ra and n.year = s.year
)
select * from final;
