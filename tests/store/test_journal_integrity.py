"""Journals that cannot lie: tampered rows, foreign files, and writers racing for one folder."""

import json
import multiprocessing
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from compare import assert_cv_results_equal
from estimators import SlowRidge
from sklearn.datasets import make_regression

from raygrid import RayGridSearchCV
from raygrid.store.journal import MANIFEST, Journal

X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
GRID = {"alpha": [0.1, 1.0, 10.0, 100.0]}


def scores_only(results):
    return {k: v for k, v in results.items() if "_time" not in k}


def _parts(path):
    return sorted(p for p in os.listdir(path) if p.startswith("part-"))


def _rewrite_journal(path, change):
    """Replace every part of the journal by one part whose rows ``change`` edited."""
    tables = [pq.read_table(os.path.join(path, p)) for p in _parts(path)]
    table = pa.concat_tables(tables)
    rows = table.to_pylist()
    change(rows)
    for part in _parts(path):
        os.remove(os.path.join(path, part))
    name = os.path.join(path, "part-99999999999999999999-1-tampered.parquet")
    schema = table.schema
    if any(isinstance(r.get("fit_time"), str) for r in rows):
        schema = schema.set(schema.get_field_index("fit_time"), pa.field("fit_time", pa.string()))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), name)
    return name


def _tamper(rows):
    rows[0]["test_scores"] = "{not json"
    rows[1]["test_scores"] = json.dumps("0.99")  # a string, not a number
    rows[2]["test_scores"] = "null"
    rows[3]["params"] = json.dumps({"alpha": 12345.0})  # another candidate's result
    rows.append({**rows[4], "key": "f" * 40})  # a key no search of this grid asks for


def test_tampered_rows_are_recomputed_and_their_file_named(tmp_path):
    plain = RayGridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=tmp_path).fit(X, y)
    file = _rewrite_journal(tmp_path, _tamper)
    with pytest.warns(RuntimeWarning) as caught:
        again = RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=tmp_path).fit(X, y)
    messages = [str(w.message) for w in caught]
    assert any(file in m and "3 row(s)" in m and "not JSON" in m for m in messages), messages
    assert any("12345.0" in m for m in messages), messages
    # The four tampered fits ran again; the other eight were reused.
    assert (~again.tasks_["resumed"]).sum() == 4
    assert_cv_results_equal(scores_only(again.cv_results_), scores_only(plain.cv_results_))


def test_journal_part_with_wrong_column_types_is_refused_naming_it(tmp_path):
    RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2, results_dir=tmp_path).fit(X, y)

    def fit_time_as_text(rows):
        for row in rows:
            row["fit_time"] = "fast"

    file = _rewrite_journal(tmp_path, fit_time_as_text)
    with pytest.raises(ValueError, match="wrong type") as info:
        RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2, results_dir=tmp_path).fit(X, y)
    assert file in str(info.value)


def _open_many(path_prefix, key, barrier, trials, out):
    errors = []
    for trial in range(trials):
        barrier.wait()
        try:
            Journal(f"{path_prefix}-{trial}", key, {"who": key})
            errors.append("ok")
        except ValueError as exc:
            errors.append("refused" if "another search" in str(exc) else f"other: {exc}")
        except Exception as exc:
            errors.append(f"raw {type(exc).__name__}: {exc}")
    out.put((key, errors))


def test_two_processes_opening_one_new_results_dir_never_collide(tmp_path):
    trials = 200
    # Not fork: a forked copy of a process running Ray's gRPC threads can wedge them.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    out = context.Queue()
    prefix = str(tmp_path / "results")
    procs = [
        context.Process(target=_open_many, args=(prefix, key, barrier, trials, out))
        for key in ("search-a", "search-b")
    ]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(30)
    outcomes = list(zip(results["search-a"], results["search-b"], strict=True))
    assert len(outcomes) == trials
    # In every trial exactly one search owns the folder and the other is refused.
    assert all(sorted(pair) == ["ok", "refused"] for pair in outcomes), [
        pair for pair in outcomes if sorted(pair) != ["ok", "refused"]
    ][:5]
    for trial in range(trials):
        with open(os.path.join(f"{prefix}-{trial}", MANIFEST)) as f:
            owner = json.load(f)["search_key"]
        winner = "search-a" if outcomes[trial][0] == "ok" else "search-b"
        assert owner == winner
        assert not [n for n in os.listdir(f"{prefix}-{trial}") if n.endswith(".tmp")]


def test_null_scores_in_a_dict_and_infinite_scores_are_refused(tmp_path):
    RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2, results_dir=tmp_path).fit(X, y)

    def bad_scores(rows):
        rows[0]["test_scores"] = json.dumps({"r2": None})
        rows[1]["test_scores"] = "Infinity"

    _rewrite_journal(tmp_path, bad_scores)
    with pytest.warns(RuntimeWarning, match="2 row"):
        again = RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2, results_dir=tmp_path)
        again.fit(X, y)
    assert not again.tasks_["resumed"].any()
    assert np.isfinite(again.cv_results_["mean_test_score"]).all()


def test_workers_journal_their_own_fits(tmp_path, monkeypatch):
    driver_rows = []
    append = Journal.append

    def counting_append(self, entries):
        driver_rows.append(len(entries))
        return append(self, entries)

    monkeypatch.setattr(Journal, "append", counting_append)
    monkeypatch.chdir(tmp_path)  # a relative results_dir: the workers run elsewhere
    RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir="results").fit(X, y)
    assert sum(driver_rows) == 0  # every row came from a worker
    with open(tmp_path / "results" / MANIFEST) as f:
        key = json.load(f)["search_key"]
    assert len(Journal(tmp_path / "results", key, {}).load()) == 12
