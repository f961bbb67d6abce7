-- Model inputs of the `current` task (behind this year), one row per student-year:
-- the exact columns of features.featuresets.FEATURES["current"], plus ra, year and target.
-- The year's own outcome columns are excluded: leakage policy (features/featuresets.py).
create or replace view features_current as
with
final as (
    select
        * exclude (folga_proximo_ano, defasagem, ian, inde, next_defasagem),
        case when defasagem is null then null else (defasagem < 0)::double end as target
    from feature_base
)
select * from final;
