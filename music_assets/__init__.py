"""Music streaming pipeline: Dagster assets locally, MWAA + Glue in production."""
