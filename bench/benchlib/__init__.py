"""Helpers for ``bench/decision.py``: workload generation, the server and load generators."""
