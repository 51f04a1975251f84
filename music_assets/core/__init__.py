"""The pure domain of the pipeline: contracts, validation, SQL transforms, KPIs, storage layout.

Nothing here imports dagster or airflow: AWS Glue ships this package as a zip.
"""
