"""Dagster layer of the pipeline: assets, checks, sensor, partitions, resources and jobs.

Everything here is a thin shell around :mod:`music_assets.core`; the entry point that
assembles it is :mod:`music_assets.definitions`.
"""
