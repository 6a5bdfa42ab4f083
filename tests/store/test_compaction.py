"""Journal compaction: few parts after a search, and a process killed while compacting
loses no record and duplicates none (killed for real, with SIGKILL, at each step)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from compare import assert_cv_results_equal
from estimators import SlowRidge
from sklearn.datasets import make_regression
from sklearn.model_selection import GridSearchCV

from raygrid import RayGridSearchCV
from raygrid.store import compaction
from raygrid.store.journal import MANIFEST, Journal
from raygrid.store.location import Location

X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
GRID = {"alpha": [0.1 * i for i in range(1, 9)]}

COMPACT = textwrap.dedent(
    """
    import json, sys
    from raygrid.store.journal import MANIFEST, Journal
    from raygrid.store.location import Location
    where = sys.argv[1]
    key = json.loads(Location(where).read(MANIFEST))["search_key"]
    Journal(where, key, {}).compact()
    """
)


def scores_only(results):
    return {k: v for k, v in results.items() if "_time" not in k}


def _journal(where):
    key = json.loads(Location(where).read(MANIFEST))["search_key"]
    return Journal(where, key, {})


def _kill_while_compacting(where, step, tmp_path):
    marker = tmp_path / f"paused-{step}"
    env = {**os.environ, compaction.PAUSE_ENV: f"{step}:{marker}"}
    proc = subprocess.Popen([sys.executable, "-c", COMPACT, where], env=env)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, f"compaction exited ({proc.returncode}) before {step}"
            assert time.time() < deadline, f"compaction did not reach {step}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(params=["local", "s3"])
def journal_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "journal")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/journal"


@pytest.mark.parametrize("step", ["written", "deleting"])
def test_compaction_killed_loses_and_duplicates_nothing(journal_uri, step, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(compaction, "SMALL_PART_ROWS", 0)  # no compaction: many parts
        RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=journal_uri).fit(X, y)
    journal = _journal(journal_uri)
    before = journal.load()
    n_parts = len(journal.parts())
    assert len(before) == 24 and n_parts > 2

    _kill_while_compacting(journal_uri, step, tmp_path)
    # Killed with the merged part written and the old parts (all or half) still there.
    assert n_parts < len(journal.parts()) + (n_parts // 2 + 1) + 1
    after = journal.load()
    assert after == before  # every record, each once, as it was

    resumed = RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=journal_uri).fit(X, y)
    assert resumed.tasks_["resumed"].all() and len(resumed.tasks_) == 24
    reference = GridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    assert_cv_results_equal(scores_only(resumed.cv_results_), scores_only(reference.cv_results_))
    assert len(journal.parts()) == 1 and journal.load() == before


def test_compaction_leaves_parts_with_foreign_rows_alone(tmp_path, monkeypatch):
    where = str(tmp_path / "journal")
    with monkeypatch.context() as patch:
        patch.setattr(compaction, "SMALL_PART_ROWS", 0)
        RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=where).fit(X, y)
    import pyarrow.parquet as pq

    journal = _journal(where)
    first = journal.parts()[0]
    table = pq.read_table(os.path.join(where, first))
    rows = table.to_pylist()
    rows[0]["test_scores"] = "{not json"
    pq.write_table(table.from_pylist(rows, schema=table.schema), os.path.join(where, first))
    with pytest.warns(RuntimeWarning, match="not what raygrid writes"):
        assert journal.compact() > 0
    assert first in journal.parts() and len(journal.parts()) == 2
