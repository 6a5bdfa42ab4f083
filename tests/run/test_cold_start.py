"""Cold start: workers are fed one architecture at a time.

Driver-side only (no Ray): the order :func:`raygrid.run.plan.submission_order` gives.
"""

from __future__ import annotations

from sklearn.model_selection import ParameterGrid

from raygrid.run import plan


def test_submission_groups_one_architecture_longest_first():
    grid = {"units": [32, 64, 128], "batch_size": [16, 64], "epochs": [10, 20]}
    tasks = plan.plan_tasks(list(ParameterGrid(grid)), n_splits=3)
    order = plan.submission_order(tasks)
    assert sorted(t.index for t in order) == [t.index for t in tasks]
    units = [t.params["units"] for t in order]
    # Each architecture is submitted in one run, the one with the longest task first.
    runs = [u for i, u in enumerate(units) if i == 0 or units[i - 1] != u]
    assert runs == [128, 64, 32]
    # Within an architecture, longest first.
    for u in (32, 64, 128):
        costs = [plan.expected_cost(t.params) for t in order if t.params["units"] == u]
        assert costs == sorted(costs, reverse=True)


def test_architecture_key_reads_nested_names_and_ignores_training_ones():
    a = plan.architecture_key({"clf__units": 8, "clf__learning_rate": 0.1, "epochs": 5})
    b = plan.architecture_key({"clf__units": 8, "clf__learning_rate": 0.01, "epochs": 20})
    assert a == b == (("clf__units", "8"),)
    assert plan.architecture_key({"activation": "relu"}) != plan.architecture_key(
        {"activation": "tanh"}
    )
