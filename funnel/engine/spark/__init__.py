"""The Spark engine (engine = "spark"): pyspark and sqlglot are imported only in here."""
