-- Model inputs of the `next_year` task (behind next year, from this year's data), one row per
-- student-year: FEATURES["next_year"] plus ra, year and target, known when the student appears
-- in the following year.
create or replace view features_next_year as
with
final as (
    select
        * exclude (next_defasagem),
        case when next_defasagem is null then null else (next_defasagem < 0)::double end as target
    from feature_base
)
select * from final;
