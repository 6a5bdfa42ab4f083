"""Comparison of a raygrid search with scikit-learn's, shared by the test modules."""

import numpy as np


def assert_cv_results_equal(ours: dict, theirs: dict) -> None:
    """``cv_results_`` equal key for key, in order, with dtypes and masks; times aside."""
    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        if "_time" in key:
            assert got.shape == expected.shape and got.dtype == expected.dtype, key
        elif isinstance(expected, np.ma.MaskedArray):
            assert isinstance(got, np.ma.MaskedArray), key
            assert got.dtype == expected.dtype, key
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected))
            assert [repr(v) for v in got.tolist()] == [repr(v) for v in expected.tolist()], key
        elif isinstance(expected, np.ndarray):
            assert got.dtype == expected.dtype, key
            np.testing.assert_array_equal(got, expected, err_msg=key)
        else:
            assert repr(got) == repr(expected), key
