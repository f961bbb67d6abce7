"""DuckDB access: one connection factory, SQL in .sql files, table contracts."""
