-- outcomes: every scored student whose truth is now known, one row per (task, year scored, ra).
-- The truth (`behind`) is the year's own `defasagem < 0` for `current`, and the following
-- year's for `next_year`; students with no such row (left the programme, not yet surveyed)
-- have no truth yet and are not listed. Columns: warehouse/contracts.py.
create or replace view outcomes as
with scored as (
    select task, year, ra, model_version, risk_label, risk_score
    from risk_scores
),

truth as (
    select ra, year, defasagem < 0 as behind
    from students
    where defasagem is not null
),

final as (
    select
        scored.task,
        scored.year,
        scored.ra,
        scored.model_version,
        scored.risk_label,
        scored.risk_score,
        truth.behind
    from scored
    inner join truth
        on truth.ra = scored.ra
        and truth.year = scored.year + case when scored.task = 'next_year' then 1 else 0 end
)

select * from final
