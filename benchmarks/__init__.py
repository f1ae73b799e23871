"""Benchmarks: `make bench` runs every ``bench_*.py`` module's ``main()``.

Each prints its figures as medians over repeats and as ratios against a baseline run in
the same process, because the machine is small and noisy. Nothing here asserts a time.
"""
