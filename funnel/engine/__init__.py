"""Where a build runs: DuckDB (the env's database file, the strict CSV load) and Spark."""
