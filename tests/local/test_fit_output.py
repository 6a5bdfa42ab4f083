"""What fits print reaches a redirected driver's output as plain lines: no colour codes,
no worker prefix (one node)."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS_DIR = os.path.join(ROOT, "tests")

SCRIPT = textwrap.dedent(
    """
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    from raygrid import RayGridSearchCV
    from raygrid.local.connect import start_local


    class TalkingRidge(Ridge):
        def fit(self, X, y):
            print(f"fitting alpha={self.alpha}", flush=True)
            return super().fit(X, y)


    start_local(num_cpus=2)
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    RayGridSearchCV(TalkingRidge(), {"alpha": [0.5, 2.0]}, cv=2, refit=False).fit(X, y)
    print("SCRIPT_END", flush=True)
    """
)


def test_fit_prints_in_a_redirected_output_hold_no_escape_codes(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, TESTS_DIR])}
    env.pop("RAY_ADDRESS", None)
    with open(tmp_path / "output.txt", "w+") as output:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
        output.seek(0)
        out = output.read()
    assert done.returncode == 0, out
    assert "SCRIPT_END" in out
    lines = out.splitlines()
    # The 4 fold fits' lines, each as the fit printed it (no Ray prefix, no colour).
    assert sorted(line for line in lines if line.startswith("fitting")) == [
        "fitting alpha=0.5",
        "fitting alpha=0.5",
        "fitting alpha=2.0",
        "fitting alpha=2.0",
    ], out
    assert "\x1b" not in out, out
    assert "pid=" not in out, out
