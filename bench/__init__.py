"""Benchmarks of the pipeline (GitHub issue "Benchmarks and performance").

``python -m bench.run`` generates (and caches) sample data, runs every case in a fresh process
(``python -m bench.cases <case> ...``), prints one table and the targets, and keeps the figures
in ``bench/results/latest.json``. See ``bench/run.py``.
"""
