"""One dynamic partition per batch: the sensor adds a partition for each batch id it creates."""

from dagster import DynamicPartitionsDefinition

BATCH_PARTITIONS_NAME = "batches"

batch_partitions = DynamicPartitionsDefinition(name=BATCH_PARTITIONS_NAME)
