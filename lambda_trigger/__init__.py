"""AWS Lambda glue that turns S3 ObjectCreated notifications into MWAA DAG runs.

The handler lives in :mod:`lambda_trigger.trigger_dag_lambda`; it is self-contained
(standard library + boto3/botocore only) so the file can be deployed on its own.
"""
