"""What a search keeps: fit records, the journal of finished fits, saved results.

- :mod:`~raygrid.store.record`: :class:`~raygrid.store.record.FitRecord`, the one record of
  a fit that collector, aggregator, journal and tables all read.
- :mod:`~raygrid.store.journal`: ``results_dir``, finished fits written by the workers and
  read back on resume.
- :mod:`~raygrid.store.results`: ``cv_results_`` and ``tasks_`` saved as tables and read back,
  at a path or a URI; a spec's data files read the same way.
- :mod:`~raygrid.store.files`: atomic and exclusive file writes.
- :mod:`~raygrid.store.location`: a local folder or a URI opened through ``pyarrow.fs``;
  :mod:`~raygrid.store.compaction`: the journal's small parts merged into a few large ones;
  :mod:`~raygrid.store.live`: results refreshed at the output while a search runs.
"""
