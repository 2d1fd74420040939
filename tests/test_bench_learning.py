"""scripts/bench_learning.py: the summary statistics a README row is built from."""

from __future__ import annotations


import pytest


def test_interquartile_mean_drops_the_lowest_and_highest_quarter(load_script):
    iqm = load_script("bench_learning").interquartile_mean
    # 5 seeds: the lowest (0.10) and the highest (1.00) go; (0.90 + 0.95 + 0.97) / 3
    assert iqm([0.95, 0.10, 1.00, 0.90, 0.97]) == pytest.approx(0.94)
    # 8 values: two go from each end; (3 + 4 + 5 + 6) / 4
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    assert iqm([0.5, 0.7]) == pytest.approx(0.6)  # too few to trim: the plain mean
