"""The ``raygrid`` command: ``run``, ``submit``, ``report``, ``up``, ``down``.

- :mod:`~raygrid.cli.main`: the commands (``python -m raygrid.cli`` or ``raygrid``).
- :mod:`~raygrid.cli.keeper`: the process ``raygrid up`` leaves running.
"""
