"""The TOML search spec that ``raygrid run`` and ``raygrid submit`` read.

- :mod:`~raygrid.spec.search_spec`: :class:`~raygrid.spec.search_spec.SearchSpec`, loading
  and checking a whole spec, table by table.
- :mod:`~raygrid.spec.estimator_table` and :mod:`~raygrid.spec.search_table`: the
  ``[estimator]`` and ``[search]`` tables.
- :mod:`~raygrid.spec.data` and :mod:`~raygrid.spec.output`: the ``[data]``, ``[output]``
  and ``[tracking]`` tables.
- :mod:`~raygrid.spec.problems`: collected ``FILE: [table].key: ...`` errors.
- :mod:`~raygrid.spec.toml_writer`: writing a spec back out.
"""
