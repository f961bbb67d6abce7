-- One year of a task's feature view to a Parquet file (COPY takes no bound parameters).
copy (select * from {table} where year = {year} order by ra) to '{target}' (format parquet, row_group_size {row_group_rows})
