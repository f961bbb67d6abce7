-- One year of a task's feature view.
select * from {table} where year = ?
