-- Model inputs of the `current` task (behind this year), one row per student-year:
-- the exact columns of features.featuresets.FEATURES["current"], plus ra, year and target.
-- No column of the year's own outcome (defasagem, ian, inde) is selected: leakage policy.
create or replace view features_current as
with
final as (
    select
        ra, year,
        fase, idade, idade_menos_fase, anos_no_programa, idade_ref, fase_esperada, atraso_esperado,
        genero, instituicao,
        iaa, ieg, ips, ipp, ida, ipv,
        mat, por, ing,
        prev_defasagem, prev_inde, prev_ida,
        case when defasagem is null then null else (defasagem < 0)::double end as target
    from feature_base
)
select * from final;
