"""A real S3 endpoint for tests: moto's server mode on 127.0.0.1, once per test session.

pyarrow (and boto3) reach it through ``AWS_ENDPOINT_URL``. Ray workers inherit the
environment of the driver only when the local Ray starts, so :func:`configure_environment`
runs before the session's Ray starts (tests/conftest.py calls it): it picks the port and
sets the variables; the server itself starts only when a test asks for :func:`s3_server`.
Test subprocesses (``raygrid run``) inherit the variables as well.
"""

import os
import socket
import uuid

import pytest

# Set for the whole test session; never real credentials.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "raygrid-test",
    "AWS_SECRET_ACCESS_KEY": "raygrid-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure_environment() -> str:
    """Point this process (and everything it starts later) at the test S3 endpoint.

    Returns
    -------
    str
        The endpoint URL.
    """
    endpoint = os.environ.get("RAYGRID_TEST_S3_ENDPOINT")
    if endpoint is None:
        endpoint = f"http://127.0.0.1:{_free_port()}"
        os.environ["RAYGRID_TEST_S3_ENDPOINT"] = endpoint
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.update(TEST_CREDENTIALS)
    return endpoint


class S3Server:
    """moto's S3 in a thread of this process, at the configured endpoint."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise

        self.endpoint = configure_environment()
        port = int(self.endpoint.rsplit(":", 1)[1])
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()

    def client(self):
        """A boto3 S3 client of this endpoint."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        """A new empty bucket; its name."""
        name = f"raygrid-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The object keys under ``prefix`` in ``bucket``."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """The session's S3 endpoint (started on first use)."""
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket on the test S3 server; its name."""
    return s3_server.new_bucket()
