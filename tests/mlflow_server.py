"""A real MLflow tracking server for tests: SQLite backend, artifacts in a temp dir."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    """A TCP port nobody listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MLflowServer:
    """``mlflow server`` in its own process group, on a free local port.

    Parameters
    ----------
    root : path-like
        Where its database, artifacts and log go.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        root = os.fspath(root)
        os.makedirs(root, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            os.path.join(root, "artifacts"),
        ]
        # The server's job runner (extra consumer processes) is not needed for tracking.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = os.path.join(root, "server.log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout: float = 180) -> None:
        """Wait until ``/health`` answers; raise with the server's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        with open(self.log, errors="replace") as f:
            raise RuntimeError(f"mlflow server did not start:\n{f.read()[-3000:]}")

    def stop(self) -> None:
        """Kill the server and every process it started."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
