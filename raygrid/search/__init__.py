"""The searches users call: what ``fit()`` does, from validation to ``cv_results_``.

- :mod:`~raygrid.search.family`: the four public classes (grid, randomized, halving grid,
  halving randomized), each scikit-learn's class followed by :class:`RaySearchMixin` in
  its bases (so the mixin sits between it and ``BaseSearchCV``).
- :mod:`~raygrid.search.mixin`: :class:`RaySearchMixin`, the ``fit`` that plans, runs and
  aggregates one search through scikit-learn's ``_run_search`` seam.
- :mod:`~raygrid.search.waves`: ``_SearchRun``, one ``fit``'s waves of candidates (what
  ``evaluate_candidates`` runs) and its refit.
- :mod:`~raygrid.search.validate`: what is checked before any fit is scheduled.
- :mod:`~raygrid.search.lazy_data`: what the driver reads of a lazy dataset (the target,
  only when the splits need it).
"""
