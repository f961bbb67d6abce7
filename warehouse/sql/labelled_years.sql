-- The years of a task's feature view whose target is known.
select distinct year from {table} where target is not null
