"""Local tools over the core: sample data, the ``compute`` dry run, the accounting audit.

They import ``music_assets.core``; core never imports them. Never shipped to Glue: the zip Glue
gets (``airflow_export/archives.py::core_zip``) holds ``music_assets/core/**`` only.
"""
