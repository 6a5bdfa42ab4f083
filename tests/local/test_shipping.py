"""An estimator from a module only the driver can import runs on a Ray the user started.

The module lives in a folder the driver adds to its own ``sys.path``: Ray's workers,
started by the user's ``ray.init()`` (no runtime environment) or by a multi-node
cluster, cannot import it, so raygrid sends it by value.
"""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    import ray
    from sklearn.datasets import make_regression
    import driver_only_models
    from raygrid import RayGridSearchCV

    if sys.argv[1] == "init":
        ray.init(num_cpus=2, include_dashboard=False)
    else:
        from ray.cluster_utils import Cluster
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    search = RayGridSearchCV(
        driver_only_models.ShiftedRidge(), {"shift": [0.0, 1.0]}, cv=2, error_score="raise"
    ).fit(X, y)
    assert type(search.best_estimator_) is driver_only_models.ShiftedRidge
    nodes = search.tasks_["node_id"].nunique()
    print("RESULT", search.best_params_["shift"], nodes, sorted(search.tasks_["pid"].unique()))
    ray.shutdown()
    """
)

MODULE = textwrap.dedent(
    """
    import os
    from sklearn.linear_model import Ridge

    class ShiftedRidge(Ridge):
        def __init__(self, alpha=1.0, shift=0.0):
            super().__init__(alpha=alpha)
            self.shift = shift

        def fit(self, X, y):
            self.fitted_in_pid_ = os.getpid()
            return super().fit(X, y + self.shift)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("ray_start", ["init", "cluster"])
def test_driver_only_module_reaches_workers(tmp_path, ray_start):
    modules, workdir = tmp_path / "models", tmp_path / "work"
    modules.mkdir()
    workdir.mkdir()
    (modules / "driver_only_models.py").write_text(MODULE)
    (workdir / "run.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "run.py", ray_start, str(modules)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert result, done.stdout
    _, shift, nodes, _pids = result[0].split(" ", 3)
    assert shift == "0.0"
    if ray_start == "cluster":
        assert int(nodes) == 2
