"""A ``results_dir`` written by an earlier release resumes: no fit runs again."""

import os
import shutil
import sys

import pytest
from compare import assert_cv_results_equal

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
sys.path.insert(0, DATA)
from make_release_journals import SEARCHES  # noqa: E402

JOURNALS = sorted(d for d in os.listdir(DATA) if d.startswith("journal-"))


def _scores(results):
    return {k: v for k, v in results.items() if "_time" not in k}


@pytest.mark.parametrize("name", JOURNALS)
def test_release_journal_resumes_every_fit(name, tmp_path):
    kind = name.rsplit("-", 1)[1]
    journal = tmp_path / name
    shutil.copytree(os.path.join(DATA, name), journal)
    resumed, X, y = SEARCHES[kind](str(journal))
    resumed.fit(X, y)
    assert resumed.tasks_["resumed"].all(), resumed.tasks_[["candidate", "split", "resumed"]]
    fresh, X, y = SEARCHES[kind](None)
    fresh.fit(X, y)
    assert_cv_results_equal(_scores(resumed.cv_results_), _scores(fresh.cv_results_))


def test_release_journals_are_present():
    assert {n.rsplit("-", 1)[1] for n in JOURNALS} >= {"ridge", "keras"}
