"""``raygrid report``: ranked tables, figures and an HTML page from saved results.

- :mod:`~raygrid.report.build`: the report of one results folder.
- :mod:`~raygrid.report.analysis`: what the figures show, computed from the results.
- :mod:`~raygrid.report.figures`: the matplotlib figures; :mod:`~raygrid.report.page`: the page.
- :mod:`~raygrid.report.ranking`: ranked tables as text.
"""
