"""The asset group every batch asset belongs to (one box in the UI's lineage graph)."""

GROUP_NAME = "music_batches"
