"""The benchmarks' TensorFlow-free copy of the seed grid and data equals the example's."""

import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import seed_grid_search  # noqa: E402
import seed_setup  # noqa: E402


def test_benchmarks_seed_grid_and_data_are_the_examples():
    assert seed_setup.SEED_GRID == seed_grid_search.SEED_GRID
    for ours, theirs in zip(seed_setup.seed_data(), seed_grid_search.seed_data(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
