"""Result records: the store (one JSON file per cell), aggregation, tables and plots.

This package knows only result records (see ``results.store`` for the format); display names and
orders come in from the caller.
"""
