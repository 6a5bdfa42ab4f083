"""scikit-learn's ``model_selection/tests/test_search.py``, run against raygrid's classes.

Every test scikit-learn ships for its searches runs here with ``GridSearchCV``,
``RandomizedSearchCV``, ``HalvingGridSearchCV``, ``HalvingRandomSearchCV`` and
``BaseSearchCV`` bound to raygrid's classes (see ``sklearn_suites.py``), except:
"""

from sklearn_suites import load_rebound

EXPECTED_FAILURES = {
    "test_multi_metric_search_forwards_metadata": (
        "the scorer records the metadata it received in a registry held by the scorer "
        "object; on Ray that object is a copy inside each worker process, so the "
        "registry of the test's own scorer stays empty"
    ),
    "test_custom_run_search": (
        "asserts that every fitted attribute of a GridSearchCV equals a hand-written "
        "search's with ==; raygrid's searches add tasks_, a DataFrame of per-fit "
        "timings, pids and nodes, which differs between any two runs and has no "
        "truth value"
    ),
}

globals().update(load_rebound("test_search", EXPECTED_FAILURES))
