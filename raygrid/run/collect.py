"""What the driver does with each finished fit as it arrives.

Keep it (in scikit-learn's order), journal it, show its warnings and verbose line, move
the progress bar, and stop the search when a fit's error must stop it
(``error_score='raise'``, a scorer that broke, or ``max_consecutive_failures``).
"""

from __future__ import annotations

import warnings
from typing import Any

from raygrid.run import progress
from raygrid.run.callbacks import deliver
from raygrid.run.units import Task
from raygrid.store.journal import Journal, params_text
from raygrid.store.record import FitRecord


class Collector:
    """Receives the records of finished fits, in completion order.

    Parameters
    ----------
    tasks : list of Task
        The search's tasks, in scikit-learn's order.
    keys : list of str or None
        The journal key of each task (None without a journal).
    journal : Journal or None
        Where finished fits are made durable.
    error_score : 'raise' or numeric
        The search's ``error_score``.
    verbose : int
        The search's ``verbose``.
    max_consecutive_failures : int or None
        Stop once this many fits in a row have failed.
    """

    def __init__(
        self,
        tasks: list[Task],
        keys: list[str] | None,
        journal: Journal | None,
        error_score: Any,
        verbose: int,
        max_consecutive_failures: int | None,
    ) -> None:
        self.tasks = tasks
        self.keys = keys
        self.journal = journal
        self.error_score = error_score
        self.verbose = verbose
        self.max_consecutive_failures = max_consecutive_failures
        self.records: list[FitRecord | None] = [None] * len(tasks)
        self.first_candidate = tasks[0].candidate
        self.n_candidates = tasks[-1].candidate + 1 - self.first_candidate
        self.n_splits = tasks[-1].split + 1
        self.bar = progress.ProgressBar(False, len(tasks), self.n_splits)
        self._failed_in_a_row: list[str] = []
        # The first (in scikit-learn's order) fit so far that must stop the search.
        self._to_raise: FitRecord | None = None

    def resume_from_journal(self) -> list[Task]:
        """Take every journaled record of this search; return the tasks still to run.

        A journaled failure is reused with this search's ``error_score``, except under
        ``error_score='raise'``, where the fit runs again so that it can raise.
        """
        if self.journal is None:
            return list(self.tasks)
        done = self.journal.load()
        texts: dict[int, str] = {}  # each candidate's parameters as the journal holds them
        for task, key in zip(self.tasks, self.keys, strict=True):
            row = done.get(key)
            if row is None or (row["fit_error"] and self.error_score == "raise"):
                continue
            if task.candidate not in texts:
                texts[task.candidate] = params_text(task.params)
            if not _same_params(row["params"], texts[task.candidate]):
                warnings.warn(
                    f"results_dir: the journal's record {key} holds parameters "
                    f"{row['params']} under the key of {task.params}; it is not used and "
                    "the fit runs again.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            record = FitRecord.from_row(task.index, row)
            if record.failed:
                record.test_scores = _fill(record.test_scores, self.error_score)
                if record.train_scores is not None:
                    record.train_scores = _fill(record.train_scores, self.error_score)
            self.records[task.index] = record
        return [t for t in self.tasks if self.records[t.index] is None]

    def show_progress(self, show: bool | str) -> None:
        """Start the progress bar (``show`` is the search's ``progress``)."""
        done = sum(r is not None for r in self.records)
        self.bar = progress.ProgressBar(show, len(self.tasks), self.n_splits, done=done)
        for task, record in zip(self.tasks, self.records, strict=True):
            if record is not None:
                self.bar.update(task.candidate, record, resumed=True)

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()

    def __call__(self, batch: list[FitRecord]) -> None:
        """Handle one batch of freshly finished fits."""
        for record in batch:
            if record.trained_in is not None:
                record.trained_in = self.tasks[record.trained_in].candidate
        if self.journal is not None:
            self.journal.append(
                [
                    (self.keys[r.index], *_place(self.tasks[r.index]), r)
                    for r in batch
                    if r.raised is None and not r.journaled
                ]
            )
        for record in batch:
            self._handle(record)
        self._raise_in_order()

    def _raise_in_order(self) -> None:
        """Raise the error that stops the search once every fit before it has finished.

        scikit-learn fits in order and raises the first error it meets; fits run here in
        parallel, so a later fit's error may arrive first.
        """
        first = self._to_raise
        if first is not None and all(r is not None for r in self.records[: first.index]):
            raise_from_worker(first.raised, first.raised_text)

    def _handle(self, record: FitRecord) -> None:
        task = self.tasks[record.index]
        self.records[record.index] = record
        show_warnings(record.warnings)
        deliver(record.callback_messages)
        record.warnings, record.callback_messages = [], []
        if record.raised_text is not None:
            if self._to_raise is None or record.index < self._to_raise.index:
                self._to_raise = record
            return
        self.bar.update(task.candidate - self.first_candidate, record)
        if self.verbose > 1:
            candidate = (task.candidate - self.first_candidate, self.n_candidates)
            split = (task.split, self.n_splits)
            if self.verbose > 9:
                # Printed as the fit's result arrives: the fit started in a worker.
                print(progress.fit_start_line(task.params, split, candidate))
            print(progress.end_line(record, task.params, split, candidate, self.verbose))
        self._count_failure(record.failed, record.fit_error)

    def _count_failure(self, failed: bool, error: str | None) -> None:
        if not failed:
            self._failed_in_a_row.clear()
            return
        self._failed_in_a_row.append(error)
        budget = self.max_consecutive_failures
        if budget is not None and len(self._failed_in_a_row) >= budget:
            done = sum(r is not None for r in self.records)
            raise RuntimeError(
                f"max_consecutive_failures={budget}: the last {budget} fits failed, so the "
                f"search stopped after {done} of {len(self.records)} fits (finished fits "
                "are kept in results_dir when one is set). The first of these failures:\n"
                f"{self._failed_in_a_row[0]}"
            )


def show_warnings(caught: list[tuple]) -> None:
    """Re-issue the warnings one fit raised in a worker, as if raised where they were.

    One registry per fit: scikit-learn runs each fit under its own
    ``warnings.catch_warnings()``, so a warning repeated by every fit is shown once per
    fit, and the user's filters decide as they would in-process.
    """
    registry: dict = {}
    for message, category, filename, lineno in caught:
        warnings.warn_explicit(message, category, filename, lineno, registry=registry)


def _place(task: Task) -> tuple[int, int, dict[str, Any]]:
    """Where a task's fit sits in the search: ``(candidate, split, params)``."""
    return task.candidate, task.split, task.params


def _same_params(journaled: str, text: str) -> bool:
    """Whether a journal row's ``params`` text is ``text`` (a task's :func:`params_text`).

    Parameters whose text names a memory address (objects without a stable repr) cannot
    be compared across processes; the key, which hashes their content, vouches for them.
    """
    return journaled == text or " at 0x" in text


def _fill(scores: Any, error_score: Any) -> Any:
    """``error_score`` in the shape of ``scores`` (one per metric when multimetric)."""
    return dict.fromkeys(scores, error_score) if isinstance(scores, dict) else error_score


def raise_from_worker(exception: BaseException | None, error: str) -> None:
    """Raise the worker's original exception, its remote traceback attached as a note."""
    if exception is None:
        raise RuntimeError(f"A fit failed in a Ray worker:\n{error}")
    exception.add_note(f"Raised in a Ray worker:\n{error}")
    raise exception
