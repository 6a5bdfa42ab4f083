"""Running fits on Ray: from candidates × folds to finished fit records.

- :mod:`~raygrid.run.units`: the units of work (single fits, shared prefixes, fused
  stacks) and the one protocol the scheduler knows them by; :mod:`~raygrid.run.plan`: the
  units one wave asks for; :mod:`~raygrid.run.prefix` and :mod:`~raygrid.run.fusion`: the
  estimator hooks by which fits share a training prefix or train as one stack.
- :mod:`~raygrid.run.execute`: scheduling units on the worker pool (connecting to Ray is
  :mod:`raygrid.local.connect`).
- :mod:`~raygrid.run.pool`: the warm :class:`~raygrid.run.worker.FitWorker` actors, one
  per CPU/GPU slot; :mod:`~raygrid.run.worker`: what runs inside them;
  :mod:`~raygrid.run.messages`: the plain data the driver sends them and the refit's reply.
- :mod:`~raygrid.run.collect`: records back from workers, errors and warnings re-raised;
  :mod:`~raygrid.run.progress` and :mod:`~raygrid.run.callbacks`: what the user sees meanwhile.
- :mod:`~raygrid.run.gpu_memory`: a GPU slot's share of its device's memory;
  :mod:`~raygrid.run.devices`: the check that a worker's framework sees the GPUs it holds,
  and the device each fit ran on.
- :mod:`~raygrid.run.node_data`: a lazy dataset read once per node, for its workers.
"""
