"""The risk evaluation harness: simulated login histories, a Freeman baseline and metrics.

Run ``.venv/bin/python bench/risk/evaluate.py`` (see ``bench/risk/README.md``).
"""
