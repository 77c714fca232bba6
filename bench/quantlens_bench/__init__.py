"""The quantlens benchmark suite: model generation, measurements and the result table.

``bench/run`` is the entry point; ``bench/worker.py`` runs one measurement in a fresh process.
"""
