-- The model inputs of both tasks, materialised from feature_base (one row per student-year) with
-- both targets, so that analysts query a table rather than a chain of views. Rebuilt after every
-- flow that writes (warehouse/analytics.py).
create or replace table features as
with
final as (
    select
        *,
        case when defasagem is null then null else (defasagem < 0)::double end as target_current,
        case when next_defasagem is null then null else (next_defasagem < 0)::double end as target_next_year
    from feature_base
)
select * from final order by year, ra;
