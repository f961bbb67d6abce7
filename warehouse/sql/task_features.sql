-- One task's feature view, every student-year in order (the target is null where unknown).
select * from {table} order by year, ra
