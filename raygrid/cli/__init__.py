"""The ``raygrid`` command: ``run``, ``submit``, ``report``, ``up``, ``down``, ``doctor``, ``plan``.

- :mod:`~raygrid.cli.main`: the commands (``python -m raygrid.cli`` or ``raygrid``);
  :mod:`~raygrid.cli.submit`: ``submit``, a spec run as a Ray job;
  :mod:`~raygrid.cli.common`: what the commands share (reading a spec, the ranked table).
- :mod:`~raygrid.cli.keeper`: the process ``raygrid up`` leaves running.
- :mod:`~raygrid.cli.doctor`: ``raygrid doctor``, a cluster's nodes, versions and GPUs
  checked against the driver; :mod:`~raygrid.cli.dry_run`: ``raygrid plan``, a spec's
  fits counted and its cost estimated from probe fits.
"""
