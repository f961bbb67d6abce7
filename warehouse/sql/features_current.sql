-- Model inputs of the `current` task (behind this year), one row per student-year.
-- The exact columns of features.featuresets.FEATURES["current"], plus ra, year and target.
create or replace view features_current as
with
students as (
    select * from students
),
previous_year as (
    select ra, year + 1 as year, defasagem as prev_defasagem, inde as prev_inde, ida as prev_ida
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
        case when s.defasagem is null then null else (s.defasagem < 0)::double end as target
    from students as s
    left join previous_year as p on p.ra = s.ra and p.year = s.year
)
select * from final;
