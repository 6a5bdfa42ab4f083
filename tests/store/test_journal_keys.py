"""Journal keys: format 3 tells apart every parameter value format 2 did, faster."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from raygrid.store.journal import FORMAT, FORMAT_2, task_key, task_keys

VALUES = [1, 1.0, True, "1", None, [1, 2], (1, 2), np.int64(1), Ridge(alpha=1.0), {"a": 1}]


@pytest.mark.parametrize("fmt", [FORMAT, FORMAT_2])
def test_distinct_values_get_distinct_keys(fmt):
    tasks = [(i, {"p": value}, 0) for i, value in enumerate(VALUES)]
    keys = task_keys("search", tasks, ["split"], fmt)
    assert len(set(keys)) == len(VALUES)


def test_keys_depend_on_search_params_and_split_not_on_candidate_index():
    one = task_keys("s", [(0, {"a": 1.0}, 0), (0, {"a": 1.0}, 1)], ["x", "y"], FORMAT)
    moved = task_keys("s", [(7, {"a": 1.0}, 1)], ["x", "y"], FORMAT)
    other = task_keys("t", [(0, {"a": 1.0}, 0)], ["x", "y"], FORMAT)
    assert one[0] != one[1] and moved[0] == one[1] and other[0] != one[0]


def test_format_2_keys_are_release_0_1_0s():
    params = {"alpha": 0.5, "solver": "auto"}
    assert task_keys("s", [(0, params, 0)], ["x"], FORMAT_2) == [task_key("s", params, "x")]
