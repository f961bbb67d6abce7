-- What both tasks' feature views share: one row per student-year with the derived columns.
-- Definitions mirror features.featuresets.derive() (a data test checks they agree).

-- The level the school-grade rule expects at an age on 31 March (6 -> 1º ano; ALFA = 1º-2º ano,
-- Fase 1 = 3º-4º, Fase 2 = 5º-6º, Fase 3 = 7º-8º, Fase 4 = 9º, Fases 5-7 = 1º-3º EM, 8 = university).
create or replace macro fase_esperada(age) as
    case
        when age is null then null
        when floor(age) - 5 < 1 then 0
        when floor(age) - 5 > 12 then 8
        else [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7][(floor(age) - 5)::integer]
    end;

create or replace view feature_base as
with
students as (
    select
        *,
        case
            when data_nasc is not null then date_diff('day', data_nasc, make_date(year, 3, 31)) / 365.25
            when ano_nasc is not null then year - ano_nasc - 0.25
            else idade - 0.25
        end as idade_ref
    from students
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
        s.idade_ref,
        fase_esperada(s.idade_ref)::double as fase_esperada,
        (s.fase - fase_esperada(s.idade_ref))::double as atraso_esperado,
        s.genero,
        s.instituicao,
        s.iaa, s.ieg, s.ips, s.ipp, s.ida, s.ipv,
        s.mat, s.por, s.ing,
        p.prev_defasagem::double as prev_defasagem,
        p.prev_inde,
        p.prev_ida,
        (s.fase + 1 - fase_esperada(s.idade_ref + 1))::double as folga_proximo_ano,
        s.defasagem::double as defasagem,
        s.ian,
        s.inde,
        n.next_defasagem
    from students as s
    left join previous_year as p on p.ra = s.ra and p.year = s.year
    left join following_year as n on n.ra = s.ra and n.year = s.year
)
select * from final;
