"""Benchmarks of emgeo's hot paths (`python -m benchmarks`, `make bench`); not tests.

Each module measures one hot path against its limit, side by side in the same run, and
returns table rows (`common.Row`); `__main__` prints them and writes benchmarks/results/bench.csv.
"""
