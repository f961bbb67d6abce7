-- The rows of a task's feature view in some years (a list).
select * from {table} where list_contains(?, year)
